"""Face tracking between sparse detections, tube splitting and tube filters.

Detection runs every ``detect_every`` frames; between two detections of the same face the box is interpolated
linearly (detection is offline, so both ends are known — cheaper and steadier than an online tracker). A tube links
detections whose boxes overlap the tube's last detected box; VoxCeleb's rules then split it wherever a box's IoU with
the tube's *first* box drops below ``iou_split`` or its length would pass ``max_tube_frames``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a (..., 4)`` and ``b (..., 4)`` (x0, y0, x1, y1), broadcasting."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class Track:
    """Detections linked over one shot: detection frame indices (ascending), their boxes and scores."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    missed: int = 0  # consecutive detection passes without a match

    def add(self, frame: int, box: np.ndarray, score: float) -> None:
        self.frames.append(int(frame))
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))
        self.missed = 0


class Linker:
    """Greedy online linking of per-pass detections into tracks (highest IoU first).

    ``max_gap`` detection passes may miss a face before its track closes; the gap is bridged by interpolation.
    """

    def __init__(self, link_iou: float, max_gap: int = 1) -> None:
        self.link_iou = link_iou
        self.max_gap = max_gap
        self.active: list[Track] = []
        self.closed: list[Track] = []

    def step(self, frame: int, boxes: np.ndarray, scores: np.ndarray) -> list[tuple[Track, int]]:
        """Link detections of ``frame``; returns ``(track, previous detection frame)`` for every extended track."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        pairs: list[tuple[float, int, int]] = []
        for ti, tr in enumerate(self.active):
            ious = iou(tr.boxes[-1][None, :], boxes) if len(boxes) else np.zeros(0)
            pairs += [(float(v), ti, di) for di, v in enumerate(ious) if v >= self.link_iou]
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        used_t: set[int] = set()
        used_d: set[int] = set()
        extended: list[tuple[Track, int]] = []
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            tr = self.active[ti]
            extended.append((tr, tr.frames[-1]))
            tr.add(frame, boxes[di], scores[di])
        still: list[Track] = []
        for ti, tr in enumerate(self.active):
            if ti not in used_t:
                tr.missed += 1
                if tr.missed > self.max_gap:
                    self.closed.append(tr)
                    continue
            still.append(tr)
        for di in range(len(boxes)):
            if di not in used_d:
                tr = Track()
                tr.add(frame, boxes[di], scores[di])
                still.append(tr)
        self.active = still
        return extended

    def finish(self) -> list[Track]:
        """Close every track; returns all tracks ordered by first frame."""
        self.closed.extend(self.active)
        self.active = []
        return sorted(self.closed, key=lambda t: (t.frames[0], tuple(t.boxes[0])))


def interpolate(frames: list[int], boxes: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boxes from ``frames[0]`` to ``frames[-1]`` inclusive, linear between detections.

    Returns ``(boxes (T, 4), detected (T,) bool)``.
    """
    f = np.asarray(frames, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    t = np.arange(f[0], f[-1] + 1)
    out = np.stack([np.interp(t, f, b[:, k]) for k in range(4)], axis=1)
    detected = np.zeros(len(t), dtype=bool)
    detected[f - f[0]] = True
    return out, detected


def split_tube(boxes: np.ndarray, iou_split: float, max_frames: int) -> list[tuple[int, int]]:
    """VoxCeleb's rules: ``[start, end)`` segments of ``boxes (T, 4)`` where each box keeps IoU >= ``iou_split``
    with its segment's first box and no segment is longer than ``max_frames``."""
    segs: list[tuple[int, int]] = []
    start = 0
    for t in range(1, len(boxes)):
        if t - start >= max_frames or float(iou(boxes[start], boxes[t])) < iou_split:
            segs.append((start, t))
            start = t
    if len(boxes):
        segs.append((start, len(boxes)))
    return segs


def border_fraction(boxes: np.ndarray, width: int, height: int) -> float:
    """Largest fraction of a box side lying outside the frame, over all frames."""
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    out_x = np.maximum(0, -boxes[:, 0]) + np.maximum(0, boxes[:, 2] - width)
    out_y = np.maximum(0, -boxes[:, 1]) + np.maximum(0, boxes[:, 3] - height)
    return float(np.max(np.maximum(out_x / w, out_y / h))) if len(boxes) else 0.0


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian (4-neighbour) of a grayscale patch; low = blurry."""
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def face_px(boxes: np.ndarray) -> float:
    """Median face size in pixels (the box's longer side)."""
    return float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))


def filter_reason(n_frames: int, boxes: np.ndarray, scores_detected: np.ndarray, sharp: float, *, width: int,
                  height: int, min_frames: int, min_face_px: float, min_score: float, min_sharpness: float,
                  border_margin: float) -> str:
    """The first filter a tube fails (``""`` = keep): too_short, too_small, low_score, border, blurry."""
    if n_frames < min_frames:
        return "too_short"
    if face_px(boxes) < min_face_px:
        return "too_small"
    if len(scores_detected) and float(np.mean(scores_detected)) < min_score:
        return "low_score"
    if border_fraction(boxes, width, height) > border_margin:
        return "border"
    if min_sharpness > 0 and sharp < min_sharpness:
        return "blurry"
    return ""
