"""Tracking, tube splitting and filters on synthetic boxes (no detector involved)."""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.data.tubes import track as T


def test_iou_known_values() -> None:
    a = np.array([0, 0, 10, 10])
    assert T.iou(a, a) == pytest.approx(1.0)
    assert T.iou(a, np.array([5, 0, 15, 10])) == pytest.approx(50 / 150)
    assert T.iou(a, np.array([20, 20, 30, 30])) == 0.0


def test_interpolate_is_linear_between_detections() -> None:
    boxes, detected = T.interpolate([10, 15, 25], [[0, 0, 10, 10], [5, 0, 15, 10], [5, 10, 15, 20]])
    assert boxes.shape == (16, 4)
    assert detected.tolist() == [t in (0, 5, 15) for t in range(16)]
    np.testing.assert_allclose(boxes[2], [2, 0, 12, 10])  # frame 12: 2/5 of the way
    np.testing.assert_allclose(boxes[10], [5, 5, 15, 15])  # frame 20: half way from 15 to 25


def test_split_on_iou_with_first_box() -> None:
    # a box sliding right by 1 px/frame: IoU with the first box (side 20) drops below 0.25 when the shift d gives
    # (20-d)/(20+d) < 0.25, i.e. d > 12 -> a new tube starts at frame 13.
    boxes = np.array([[t, 0, t + 20, 20] for t in range(30)], dtype=float)
    segs = T.split_tube(boxes, iou_split=0.25, max_frames=1000)
    assert segs[0] == (0, 13)
    assert segs[1] == (13, 26)
    assert segs[-1][1] == 30


def test_split_on_max_length() -> None:
    boxes = np.tile([0.0, 0, 20, 20], (25, 1))
    assert T.split_tube(boxes, 0.25, 10) == [(0, 10), (10, 20), (20, 25)]


def test_linker_two_faces_and_gap() -> None:
    linker = T.Linker(link_iou=0.3, max_gap=1)
    left, right = np.array([0, 0, 20, 20.0]), np.array([100, 0, 120, 20.0])
    linker.step(0, np.stack([left, right]), np.array([0.9, 0.8]))
    linker.step(5, np.stack([right + [1, 0, 1, 0], left]), np.array([0.8, 0.9]))  # order swapped
    linker.step(10, right[None] + [2, 0, 2, 0], np.array([0.8]))  # left missed once (gap bridged)
    linker.step(15, np.stack([left, right + [3, 0, 3, 0]]), np.array([0.9, 0.8]))
    linker.step(20, np.zeros((0, 4)), np.zeros(0))
    linker.step(25, np.zeros((0, 4)), np.zeros(0))  # two misses > max_gap: both close
    linker.step(30, left[None], np.array([0.9]))  # a new track
    tracks = linker.finish()
    assert [t.frames for t in tracks] == [[0, 5, 15], [0, 5, 10, 15], [30]]
    assert tracks[0].boxes[0][0] == 0 and tracks[1].boxes[0][0] == 100


def test_filters_and_reasons() -> None:
    boxes = np.tile([100.0, 100, 164, 164], (80, 1))
    kw = dict(width=640, height=360, min_frames=64, min_face_px=48, min_score=0.5, min_sharpness=10.0,
              border_margin=0.1)
    assert T.filter_reason(80, boxes, np.array([0.9]), 50.0, **kw) == ""
    assert T.filter_reason(63, boxes[:63], np.array([0.9]), 50.0, **kw) == "too_short"
    assert T.filter_reason(80, boxes / 4, np.array([0.9]), 50.0, **kw) == "too_small"
    assert T.filter_reason(80, boxes, np.array([0.3, 0.4]), 50.0, **kw) == "low_score"
    shifted = boxes - [120, 0, 120, 0]  # 20 of 64 px outside the left edge: 0.31 > 0.1
    assert T.border_fraction(shifted, 640, 360) == pytest.approx(20 / 64)
    assert T.filter_reason(80, shifted, np.array([0.9]), 50.0, **kw) == "border"
    assert T.filter_reason(80, boxes, np.array([0.9]), 5.0, **kw) == "blurry"


def test_sharpness_orders_sharp_over_blurred() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (64, 64)).astype(np.float32)
    blurred = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, (1, 1), (0, 1))) / 4
    assert T.sharpness(sharp) > 4 * T.sharpness(blurred)
    assert T.sharpness(np.full((64, 64), 7.0)) == 0.0


# ------------------------------------------------------------------------------------------ the tubes stage
def _tubes_inputs(root):  # noqa: ANN001, ANN202 - Path -> Params
    """One real-photo video (face drifting 1 px / 4 frames in shot 0, no face in shot 1: the photo's disappearing
    is a hard cut), an empty (corrupt) file and a source the scrape stage could not fetch."""
    import cv2
    import pandas as pd
    from skimage import data

    from toontalker_bench.core.config import Params
    from toontalker_bench.core.io import write_table
    from toontalker_bench.core.video import write_video

    face = cv2.resize(data.astronaut(), (300, 300), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(130):
        f = np.full((360, 640, 3), 70, np.uint8)
        if i < 100:
            x = 100 + i // 4
            f[30:330, x:x + 300] = face
        frames.append(f)
    raw = root / "raw"
    write_video(raw / "vid.mp4", frames, fps=25.0)
    (raw / "bad.mp4").parent.mkdir(parents=True, exist_ok=True)
    (raw / "bad.mp4").write_bytes(b"")
    base = dict(url="", title="", license="", attribution="", split="", start=0.0, end=0.0, reason="", gt_path="",
                width=640, height=360, fps=25.0, n_frames=130)
    write_table(raw / "sources.parquet", pd.DataFrame([
        {**base, "source_id": "bad", "domain": "real", "identity": "", "status": "ok", "path": "bad.mp4"},
        {**base, "source_id": "gone", "domain": "cartoon", "identity": "", "status": "failed", "path": "",
         "reason": "HTTP Error 404"},
        {**base, "source_id": "vid", "domain": "real", "identity": "astronaut", "status": "ok", "path": "vid.mp4"}]))
    p = Params()
    p.workers = 1
    p.scrape.out_dir, p.tubes.out_dir = str(raw), str(root / "tubes")
    p.tubes.detect_every, p.tubes.detect_max_side, p.tubes.min_frames = 5, 320, 64
    return p


def test_tubes_stage_tubes_rejects_and_resume(tmp_path) -> None:  # noqa: ANN001
    import pandas as pd

    from toontalker_bench.data.tubes import run

    p = _tubes_inputs(tmp_path)
    report = run(p)
    tubes = pd.read_parquet(tmp_path / "tubes" / "tubes.parquet")
    assert tubes[["tube_id", "start_frame", "end_frame", "n_frames", "identity"]].values.tolist() == [
        ["vid-s000-t00", 0, 100, 100, "astronaut"]]
    z = np.load(tmp_path / "tubes" / "tracks" / "vid-s000-t00.npz")
    assert z["boxes"].shape == (100, 4) and z["landmarks68"].shape == (100, 68, 2)
    assert z["landmarks5"].shape == (100, 5, 2) and not np.isnan(z["landmarks68"]).any()
    assert z["detected"].nonzero()[0].tolist() == list(range(0, 100, 5)) + [99]
    centres = (z["boxes"][:, :2] + z["boxes"][:, 2:]) / 2
    assert abs((centres[99, 0] - centres[0, 0]) - 99 // 4) <= 3  # the box follows the pasted photo
    assert abs(centres[99, 1] - centres[0, 1]) <= 3
    assert (z["boxes"][:, 0] >= 100).all() and (z["boxes"][:, 2] <= 100 + 24 + 300).all()
    # landmarks sit inside their box on every (also interpolated) frame
    lm = z["landmarks68"]
    assert ((lm[..., 0] > z["boxes"][:, None, 0] - 15) & (lm[..., 0] < z["boxes"][:, None, 2] + 15)).all()
    cuts = pd.read_parquet(tmp_path / "tubes" / "cuts.parquet")  # the shots the same decoding pass found
    assert cuts.values.tolist() == [["vid", 0, 0, 100, True], ["vid", 1, 100, 130, True]]
    rej = pd.read_parquet(tmp_path / "tubes" / "rejects.parquet")
    got = sorted(zip(rej.source_id, rej.shot, rej.reason))
    assert got == [("bad", -1, "source_error"), ("gone", -1, "source_failed"), ("vid", 1, "no_face")]
    assert "bad.mp4" in rej[rej.source_id == "bad"].detail.iloc[0]
    assert report["rejects"] == {"no_face": 1, "source_error": 1, "source_failed": 1}
    assert (report["shots"], report["dropped_short_shots"], report["frames_decoded"]) == (2, 0, 130)
    first = (tmp_path / "tubes" / "tubes.parquet").read_bytes()
    again = run(p)
    assert again["sources_resumed"] == 1 and (tmp_path / "tubes" / "tubes.parquet").read_bytes() == first


def test_ground_truth_follows_the_tube() -> None:
    import pandas as pd

    from toontalker_bench.data.tubes.worker import _gt_arrays

    box = [10.0, 10, 50, 50]
    gt = pd.DataFrame({"frame": range(4), "has_face": [True, True, True, False],
                       "identity": ["ann", "ann", "ann", ""],
                       "box_x0": [10, 200, np.nan, np.nan], "box_y0": [10, 10, np.nan, np.nan],
                       "box_x1": [50, 240, np.nan, np.nan], "box_y1": [50, 50, np.nan, np.nan],
                       "motion": [np.full(20, k, np.float32) for k in range(4)]}).set_index("frame", drop=False)
    boxes = np.tile(box, (4, 1))
    gt_box, motion, identity, known = _gt_arrays(gt, np.arange(4), boxes, "fallback")
    assert known and identity == "ann"
    np.testing.assert_array_equal(gt_box[0], box)
    assert np.isnan(gt_box[1:]).all()  # frame 1: GT face elsewhere; 2: no box; 3: no face
    assert motion[0, 0] == 0 and np.isnan(motion[1]).all() and motion[2, 0] == 2 and np.isnan(motion[3]).all()
    elsewhere = np.tile([300.0, 10, 340, 50], (4, 1))
    assert _gt_arrays(gt.iloc[[0, 1, 3]], np.array([0, 1, 3]), elsewhere[:3], "fb")[3] is False
    assert _gt_arrays(None, np.arange(4), boxes, "fb")[2:] == ("fb", True)
