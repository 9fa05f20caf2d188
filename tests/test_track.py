"""Tracking, tube splitting and filters on synthetic boxes (no detector involved)."""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.data.faces import track as T


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
