"""``tubes.landmarks_every``: the landmark model runs on every k-th frame and on detection frames; in between
``tubes.landmarks_between`` fills in: linear interpolation, or optical flow.

The detector and landmark model are replaced by stand-ins (a box sliding 2 px/frame; landmarks that encode the frame
index non-linearly), so the expected values follow from the frame index alone. The flow test tracks real points on a
real photograph moving along a curved path, where the straight line between model frames is measurably wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.core.config import Params, TubesParams
from toontalker_bench.core.errors import ConfigError
from toontalker_bench.data.tubes import stage, worker


def _truth(f: int) -> np.ndarray:
    """What the stand-in landmark model returns on frame ``f``: non-linear in ``f``, so interpolation shows."""
    return np.full((73, 2), float(f) ** 2, np.float32)


class _Frame:
    """Stands in for a DecodedFrame: an 8x8 frame whose every pixel is its index."""

    def __init__(self, i: int) -> None:
        self.index = i
        self.pixels = np.full((8, 8, 3), i, np.uint8)

    def rgb(self) -> np.ndarray:
        return self.pixels


def _run_shot(monkeypatch: pytest.MonkeyPatch, every: int, start: int, end: int) -> tuple[dict, list[int]]:
    called: list[int] = []

    def fake_detect(frames: list[np.ndarray], name: str, max_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array([[2.0 * f[0, 0, 0], 10.0, 2.0 * f[0, 0, 0] + 60, 70.0]]), np.array([0.99])) for f in frames]

    def fake_landmarks(frame: _Frame, boxes: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        f = int(frame.rgb()[0, 0, 0])
        called.append(f)
        t = np.repeat(_truth(f)[None], len(boxes), 0)
        return t[:, :68], t[:, 68:]

    monkeypatch.setattr(worker, "detect", fake_detect)
    monkeypatch.setattr(worker, "landmarks", fake_landmarks)
    p = TubesParams(detect_every=5, landmarks_every=every, landmarks_between="linear")
    tr = worker._ShotTracker(0, start, "fake", p)
    for i in range(start, end):
        tr.push(i, _Frame(i), last=i == end - 1)
    (_, od), = tr.finish()
    return od.lm, called


def test_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    lm, called = _run_shot(monkeypatch, 1, 3, 40)
    assert called == list(range(3, 40))
    for f in range(3, 40):
        np.testing.assert_array_equal(lm[f], _truth(f))


@pytest.mark.parametrize("every", [2, 3, 5])
def test_every_k_frames_interpolated(monkeypatch: pytest.MonkeyPatch, every: int) -> None:
    start, end = 3, 40
    lm, called = _run_shot(monkeypatch, every, start, end)
    detections = {f for f in range(start, end) if (f - start) % 5 == 0} | {end - 1}
    anchors = sorted({f for f in range(start, end) if (f - start) % every == 0} | detections)
    assert sorted(called) == anchors  # the model ran on these frames only, once each
    assert sorted(lm) == list(range(start, end))
    values = [float(f) ** 2 for f in anchors]
    for f in range(start, end):
        np.testing.assert_allclose(lm[f], np.interp(f, anchors, values), rtol=1e-6)


def test_bad_landmarks_every_is_a_config_error() -> None:
    params = Params()
    params.tubes.landmarks_every = 0
    with pytest.raises(ConfigError, match="landmarks_every"):
        stage.run(params)
    params.tubes.landmarks_every, params.tubes.landmarks_between = 5, "spline"
    with pytest.raises(ConfigError, match="landmarks_between"):
        stage.run(params)


def _photo_path(n: int, bulge: float, size: tuple[int, int] = (400, 300)) -> tuple[list[np.ndarray], np.ndarray]:
    """Grey frames of a real photograph (skimage's astronaut, her face) moving 16 px right along an arc that bulges
    ``bulge`` px off the straight line, sub-pixel; and the offset of the photo on each frame."""
    import cv2
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[20:240, 150:370]
    w, h = size
    t = np.arange(n) / (n - 1)
    offs = np.stack([90 + 16 * t, 40 + bulge * np.sin(np.pi * t)], 1)
    frames = []
    for dx, dy in offs:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frames.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=90))
    return frames, offs


@pytest.mark.parametrize("bulge", [3.0, 20.0])
def test_flow_follows_the_motion_between_model_frames(bulge: float) -> None:
    """Points 5 frames apart: the flow follows the arc; where the face moves off the line faster than the flow can
    follow (20 px bulge: 6 px a frame), the points it loses keep the straight line, so it is never worse than it."""
    from toontalker_bench.faces.flow import flow_between

    n = 6
    frames, offs = _photo_path(n, bulge)
    gx, gy = np.meshgrid(np.linspace(50, 170, 17), np.linspace(50, 170, 4))
    p0 = np.stack([gx.ravel(), gy.ravel()], 1)[:68].astype(np.float32)  # 68 points on the face's texture
    truth = p0[None] + offs[:, None].astype(np.float32)
    boxes = np.concatenate([offs + 30, offs + 190], 1)
    got = flow_between(frames, boxes, truth[0], truth[-1])
    linear = truth[0][None] + (truth[-1] - truth[0])[None] * (np.arange(1, n - 1) / (n - 1))[:, None, None]
    err_flow = np.linalg.norm(got - truth[1:-1], axis=2).mean()
    err_line = np.linalg.norm(linear - truth[1:-1], axis=2).mean()
    if bulge < 5:
        assert err_line > 2 and err_flow < 0.25 * err_line, (err_flow, err_line)
    else:
        assert err_flow <= err_line, (err_flow, err_line)


def test_flow_keeps_the_straight_line_where_nothing_can_be_tracked() -> None:
    from toontalker_bench.faces.flow import flow_between

    flat = [np.full((200, 200), 128, np.uint8)] * 5
    first, last = np.float32([[50, 60], [70, 80]]), np.float32([[58, 60], [70, 96]])
    got = flow_between(flat, np.tile([[40, 40, 120, 120]], (5, 1)), first, last)
    np.testing.assert_allclose(got, [first + (last - first) * k / 4 for k in (1, 2, 3)], atol=1e-5)


def test_landmark_model_on_a_crop_gives_the_whole_frames_points(tmp_path) -> None:  # noqa: ANN001
    """The tubes stage converts only a crop around the faces to RGB for the landmark model (frames the detector did
    not need): the points equal those on the whole frame, also for a face at the frame's edge."""
    import cv2
    from skimage import data

    from toontalker_bench.core.video import decode, write_video
    from toontalker_bench.faces.landmarks import get_landmarker

    face = cv2.resize(data.astronaut()[20:300, 110:390], (180, 180), interpolation=cv2.INTER_AREA)
    frames, boxes = [], []
    for x in (230, 470, -40):  # middle, right edge, left edge (partly outside the frame)
        f = np.full((360, 640, 3), 80, np.uint8)
        a, b = max(0, x), min(640, x + 180)
        f[90:270, a:b] = face[:, a - x:b - x]
        frames.append(f)
        boxes.append([x + 40, 120, x + 150, 250])
    write_video(tmp_path / "v.mp4", frames)
    model = get_landmarker("dlib68")
    for fr, box in zip(decode(tmp_path / "v.mp4"), boxes):
        bx = np.float64([box])
        lm68, lm5 = worker.landmarks(fr, bx, "dlib68")  # the frame is not converted yet: the crop path
        assert fr._rgb is None
        np.testing.assert_array_equal(lm68, model.predict(fr.rgb(), bx))
