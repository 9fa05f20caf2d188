"""``faces.landmarks_every``: the landmark model runs on every k-th frame and on detection frames, linear in between.

The detector and landmark model are replaced by stand-ins (a box sliding 2 px/frame; landmarks that encode the frame
index non-linearly), so the expected values follow from the frame index alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.config import FacesParams, Params
from toontalker_bench.data.faces import stage
from toontalker_bench.errors import ConfigError


def _truth(f: int) -> np.ndarray:
    """What the stand-in landmark model returns on frame ``f``: non-linear in ``f``, so interpolation shows."""
    return np.full((73, 2), float(f) ** 2, np.float32)


def _run_shot(monkeypatch: pytest.MonkeyPatch, every: int, start: int, end: int) -> tuple[dict, list[int]]:
    called: list[int] = []

    def fake_detect(frames: list[np.ndarray], name: str, max_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array([[2.0 * f[0, 0, 0], 10.0, 2.0 * f[0, 0, 0] + 60, 70.0]]), np.array([0.99])) for f in frames]

    def fake_landmarks(frame: np.ndarray, boxes: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        f = int(frame[0, 0, 0])
        called.append(f)
        t = np.repeat(_truth(f)[None], len(boxes), 0)
        return t[:, :68], t[:, 68:]

    monkeypatch.setattr(stage, "detect", fake_detect)
    monkeypatch.setattr(stage, "landmarks", fake_landmarks)
    p = FacesParams(detect_every=5, landmarks_every=every)
    tr = stage._ShotTracker(0, start, end, "fake", p)
    for i in range(start, end):
        tr.push(i, np.full((8, 8, 3), i, np.uint8))
    (_, od), = tr.finish()
    return od.lm, called


def test_every_frame_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
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
    params.faces.landmarks_every = 0
    with pytest.raises(ConfigError, match="landmarks_every"):
        stage.run(params)
