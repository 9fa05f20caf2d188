"""The tubes stage's worker: one job (a source, or a chunk of one) decoded once -> its shot cuts and face tubes.

Every frame goes first to the shot-cut finder (:mod:`..cuts`, PySceneDetect's detectors on frames subsampled from the
YUV planes), then, :attr:`~..cuts.CutFinder.delay` + 1 frames later, when it is known whether a cut follows it, to the
face tracker of its shot. Inside a shot the detector runs every ``detect_every`` frames (and on the shot's last
frame), ``DETECT_BATCH`` such frames per call; detections are linked into tracks and boxes interpolated in between;
only the frames since the oldest open track's last detection (and those awaiting their detection batch) are kept in
memory. A frame is converted to RGB only when something needs its colours: the detector's frames in full, the
landmark model's other frames as a crop around the faces (the same values), the optical flow reads the decoded luma
plane. Tubes are then split (VoxCeleb's rules) and filtered; a rejected tube keeps its reason.

Landmarks (``landmarks68``/``landmarks5``) come from the landmark model on every ``landmarks_every``-th frame of the
shot and on every detection frame; the frames between are filled by ``landmarks_between``: ``linear``
interpolation, or ``flow`` (:mod:`...faces.flow`: Lucas-Kanade optical flow from both neighbouring model frames).
``scores`` is NaN on tracked (interpolated) frames; ``frames`` holds the absolute frame indices, and for demo sources
``gt_box``/``motion`` carry the ground truth wherever the GT face overlaps the tube (else NaN). The tube's identity is
the most frequent matched GT identity, else the manifest's identity, else the source id.

A chunk decodes from the key frame before its start (its cut finder warms up on the :func:`warmup_frames` before it)
to a little past its end, and its end ends tracks as a cut does. The job writes its tube arrays to ``job.bundle``
and returns its part record (cuts, segments with their tube candidates, stats); :mod:`.assemble` numbers them.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...core.config import CutsParams, TubesParams
from ...core.domains import DOMAINS
from ...core.errors import ConfigError, MediaError
from ...core.io import atomic_path
from ...core.video import DecodedFrame, decode, probe
from ...faces.pose import POSE_DIM
from .. import cuts as C
from . import track as T

GT_MATCH_IOU = 0.3  # a GT box belongs to a tube frame when they overlap at least this much
SHARP_PX = 64  # face patches are resized to this side before measuring sharpness, so sizes compare
DETECT_BATCH = 4  # detection frames per detector call: RetinaFace runs ~30% faster per frame in batches of 4
BETWEEN = ("linear", "flow")
LANDMARK_MARGIN = 0.6  # the landmark model's crop extends this fraction of the box side beyond the box (exact: see
#                        tests/test_tubes_landmarks_every.py)


def warmup_frames(cuts: CutsParams) -> int:
    """Frames a chunk's cut finder sees before the chunk starts, so that it is in the state a finder that started at
    the video's first frame would be in (its flash filter looks back ``min_shot_frames``)."""
    return 2 * (2 * cuts.min_shot_frames + 2)


@dataclass
class SourceJob:
    source: dict[str, Any]
    video: str
    gt: str  # "" = no ground truth
    params: TubesParams
    cuts: CutsParams  # the cut finder's knobs
    bundle: str  # where the job's tube arrays go (.parts/<id>.npz)
    start: int = 0  # the job's first frame
    end: int | None = None  # its end (exclusive); None = the video's end
    chunk: int = 0


@dataclass
class _Open:
    """Per-track per-frame results, filled as frames are confirmed."""

    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    lm: dict[int, np.ndarray] = field(default_factory=dict)
    sharp: list[float] = field(default_factory=list)


def detector_for(domain: str, p: TubesParams) -> str:
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}", hint="domains are real and cartoon")
    return p.real_detector if domain == "real" else p.cartoon_detector

def detect(frames: list[np.ndarray], name: str, max_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: boxes ``(N, 4)`` and scores ``(N,)`` in frame pixels; the detector sees copies at most ``max_side``
    px, all frames in one batch where it can (the same results as one by one)."""
    from ...faces.detect import get_detector

    out = []
    for dets in get_detector(name, max_side=max_side).detect_many(frames):
        if not dets:
            out.append((np.zeros((0, 4)), np.zeros(0)))
        else:
            out.append((np.array([np.asarray(d.box, dtype=np.float64) for d in dets]),
                        np.array([float(d.score) for d in dets])))
    return out


def landmarks(frame: DecodedFrame, boxes: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 68, 2)`` (NaN with a 5-point model) and ``(N, 5, 2)`` landmarks for ``boxes``.

    The model reads only pixels around each box, so a frame not yet converted to RGB is converted only there (a crop
    ``LANDMARK_MARGIN`` box sides wider than the boxes: the same points as on the whole frame)."""
    from ...faces.landmarks import five_from_68, get_landmarker

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = float(np.max(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    m = LANDMARK_MARGIN * side + 2
    x0, y0 = int(math.floor(boxes[:, 0].min() - m)), int(math.floor(boxes[:, 1].min() - m))
    x1, y1 = int(math.ceil(boxes[:, 2].max() + m)), int(math.ceil(boxes[:, 3].max() + m))
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(frame.width, x1), min(frame.height, y1)
    model = get_landmarker(name)
    if x1 - x0 < 2 or y1 - y0 < 2:
        pts = np.asarray(model.predict(frame.rgb(), boxes), dtype=np.float32)
    else:
        region = np.ascontiguousarray(frame.rgb_region(x0, y0, x1, y1))
        off = np.float64([x0, y0, x0, y0])
        pts = np.asarray(model.predict(region, boxes - off), dtype=np.float32) + np.float32([x0, y0])
    if pts.shape[1] == 68:
        return pts, np.asarray(five_from_68(pts), dtype=np.float32).reshape(len(boxes), 5, 2)
    return np.full((len(boxes), 68, 2), np.nan, np.float32), pts.reshape(len(boxes), 5, 2)


def _patch_sharpness(frame: np.ndarray, box: np.ndarray) -> float:
    import cv2

    h, w = frame.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    gray = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return T.sharpness(cv2.resize(gray, (SHARP_PX, SHARP_PX), interpolation=cv2.INTER_AREA))


def _load_gt(path: str) -> pd.DataFrame | None:
    if not path:
        return None
    gt = pd.read_parquet(path)
    return gt.set_index("frame", drop=False)


def _gt_arrays(gt: pd.DataFrame | None, frames: np.ndarray, boxes: np.ndarray, fallback_identity: str
               ) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """Ground truth along a tube: per-frame GT box ``(T, 4)`` where the GT face overlaps the tube, motion
    ``(T, POSE_DIM)`` where the GT face is the tube's face (overlapping, or annotated without a box), both NaN
    elsewhere; the identity (most frequent such GT identity, else ``fallback_identity``); and whether the GT knows this
    face at all."""
    n = len(frames)
    gt_box = np.full((n, 4), np.nan, np.float32)
    motion = np.full((n, POSE_DIM), np.nan, np.float32)
    if gt is None:
        return gt_box, motion, fallback_identity, True
    rows = gt.reindex(frames)
    has = rows["has_face"].fillna(False).to_numpy(dtype=bool)
    gb = rows[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(dtype=np.float64)
    boxed = ~np.isnan(gb).any(axis=1)
    match = has & boxed & (T.iou(np.where(boxed[:, None], gb, 0), boxes) >= GT_MATCH_IOU)
    gt_box[match] = gb[match]
    same = match | (has & ~boxed)
    for i in np.flatnonzero(same):
        motion[i] = np.asarray(rows["motion"].iloc[i], dtype=np.float32)
    ids = [str(v) for v in rows["identity"].to_numpy()[same] if isinstance(v, str) and v]
    identity = Counter(ids).most_common(1)[0][0] if ids else fallback_identity
    return gt_box, motion, identity, bool(same.any())


def _fill_linear(lm: dict[int, np.ndarray], frames: list[int]) -> None:
    """Landmarks of ``frames`` (sorted) linearly interpolated from the nearest frames either side that have them.

    Both neighbours exist: a track's previous frame and the detection frame that extends it always get landmarks.
    """
    known = sorted(lm)
    for f in frames:
        j = bisect.bisect(known, f)
        a, b = known[j - 1], known[j]
        lm[f] = (lm[a] + (lm[b] - lm[a]) * np.float32((f - a) / (b - a))).astype(np.float32)


def _fill_flow(od: _Open, frames: list[int], luma: Callable[[int], np.ndarray]) -> None:
    """Landmarks of ``frames`` (sorted) by optical flow between the nearest frames either side that have them."""
    from ...faces.flow import flow_between
    from ...faces.landmarks import five_from_68

    known = sorted(od.lm)
    spans: dict[tuple[int, int], list[int]] = {}
    for f in frames:
        j = bisect.bisect(known, f)
        spans.setdefault((known[j - 1], known[j]), []).append(f)
    for (a, b), fs in spans.items():
        if b - a < 2:
            continue
        first, last = od.lm[a], od.lm[b]
        use68 = not np.isnan(first[:68]).any()
        sel = slice(0, 68) if use68 else slice(68, 73)
        boxes = np.stack([od.boxes[f] for f in range(a, b + 1)])
        pts = flow_between([luma(f) for f in range(a, b + 1)], boxes, first[sel], last[sel])
        for k, f in enumerate(range(a + 1, b)):
            if f not in fs:
                continue
            lm = np.full((73, 2), np.nan, np.float32)
            lm[sel] = pts[k]
            if use68:
                lm[68:] = five_from_68(pts[k])
            od.lm[f] = lm


class _ShotTracker:
    """Detect / link / interpolate / landmark one shot (or the part of it inside a chunk), streaming its frames.

    Frames come as :class:`DecodedFrame`; ``push(i, frame, last=True)`` marks the shot's last frame (always
    detected)."""

    def __init__(self, shot: int, start: int, det_name: str, p: TubesParams) -> None:
        self.shot, self.start, self.end = shot, start, -1
        self.det_name, self.p = det_name, p
        self.linker = T.Linker(p.link_iou, p.max_gap)
        self.buffer: dict[int, DecodedFrame] = {}
        self.data: dict[int, _Open] = {}  # id(track) -> per-frame data
        self.queued: list[int] = []  # detection frames waiting for their batch
        self.n_detect = 0

    def push(self, i: int, frame: DecodedFrame, last: bool = False) -> None:
        self.buffer[i] = frame
        if last:
            self.end = i + 1
        if not ((i - self.start) % self.p.detect_every == 0 or last):
            return
        self.queued.append(i)
        if len(self.queued) == DETECT_BATCH or last:
            self._flush()

    def _flush(self) -> None:
        """Detect on the queued frames in one batch, then link / interpolate / landmark them in frame order."""
        if not self.queued:
            return
        queued, self.queued = self.queued, []
        self.n_detect += len(queued)
        for i, (boxes, scores) in zip(queued, detect([self.buffer[i].rgb() for i in queued], self.det_name,
                                                     self.p.detect_max_side)):
            self._step(i, boxes, scores)

    def _step(self, i: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        frame = self.buffer[i].rgb()
        before = {id(t) for t in self.linker.active}
        extended = self.linker.step(i, boxes, scores)
        todo: dict[int, list[tuple[_Open, np.ndarray]]] = {}
        for tr, prev in extended:
            seg, _ = T.interpolate([prev, i], [tr.boxes[-2], tr.boxes[-1]])
            od = self.data[id(tr)]
            for f, b in zip(range(prev + 1, i + 1), seg[1:]):
                todo.setdefault(f, []).append((od, b))
            od.sharp.append(_patch_sharpness(frame, tr.boxes[-1]))
        for tr in self.linker.active:
            if id(tr) not in before and id(tr) not in self.data:
                od = self.data[id(tr)] = _Open()
                todo.setdefault(i, []).append((od, tr.boxes[-1]))
                od.sharp.append(_patch_sharpness(frame, tr.boxes[-1]))
        pending: dict[int, tuple[_Open, list[int]]] = {}  # id(od) -> frames whose landmarks are filled in between
        for f, items in sorted(todo.items()):
            for od, b in items:
                od.boxes[f] = b
            if f != i and (f - self.start) % self.p.landmarks_every:
                for od, _ in items:
                    pending.setdefault(id(od), (od, []))[1].append(f)
                continue
            bx = np.stack([b for _, b in items])
            lm68, lm5 = landmarks(self.buffer[f], bx, self.p.landmarks)
            for k, (od, _) in enumerate(items):
                od.lm[f] = np.concatenate([lm68[k], lm5[k]])  # (73, 2): 68 then 5
        for od, frames in pending.values():
            if self.p.landmarks_between == "flow":
                _fill_flow(od, frames, lambda f: self.buffer[f].luma())
            else:
                _fill_linear(od.lm, frames)
        keep_from = min((t.frames[-1] for t in self.linker.active), default=i)  # later frames are kept as well
        for f in [f for f in self.buffer if f < keep_from]:
            del self.buffer[f]

    def finish(self) -> list[tuple[T.Track, _Open]]:
        self._flush()
        tracks = self.linker.finish()
        self.buffer.clear()
        return [(t, self.data[id(t)]) for t in tracks]


def _tube_candidates(job: SourceJob, seg: int, tracked: list[tuple[T.Track, _Open]], width: int, height: int,
                     det_name: str, gt: pd.DataFrame | None, arrays: dict[str, np.ndarray]) -> list[dict]:
    """Split and filter one segment's tracks -> its tube candidates in order (kept ones with a ``local`` name under
    which their arrays were added to ``arrays``; rejected ones with a ``reason``)."""
    p = job.params
    sid = job.source["source_id"]
    fallback_id = str(job.source.get("identity") or "") or sid
    out: list[dict] = []
    for tr, od in tracked:
        frames = np.array(sorted(od.boxes), dtype=np.int64)
        boxes = np.stack([od.boxes[f] for f in frames])
        lm = np.stack([od.lm[f] for f in frames])
        det_at = {f: s for f, s in zip(tr.frames, tr.scores)}
        scores = np.array([det_at.get(int(f), np.nan) for f in frames], dtype=np.float32)
        detected = np.array([int(f) in det_at for f in frames])
        sharp = float(np.median(od.sharp)) if od.sharp else 0.0
        for a, b in T.split_tube(boxes, p.iou_split, p.max_tube_frames):
            fr, bx = frames[a:b], boxes[a:b]
            sc = scores[a:b]
            reason = T.filter_reason(b - a, bx, sc[~np.isnan(sc)], sharp, width=width, height=height,
                                     min_frames=p.min_frames, min_face_px=p.min_face_px, min_score=p.min_score,
                                     min_sharpness=p.min_sharpness, border_margin=p.border_margin)
            gt_box, motion, identity, known = _gt_arrays(gt, fr, bx, fallback_id)
            if not reason and not known:
                reason = "not_in_ground_truth"  # a face the demo annotations do not know (e.g. in the background)
            cand = {"start_frame": int(fr[0]), "end_frame": int(fr[-1]) + 1, "reason": reason}
            if not reason:
                local = f"g{seg}t{len(out)}"
                for name, arr in (("frames", fr), ("boxes", bx.astype(np.float32)), ("scores", sc),
                                  ("landmarks68", lm[a:b, :68].astype(np.float32)),
                                  ("landmarks5", lm[a:b, 68:].astype(np.float32)), ("detected", detected[a:b]),
                                  ("gt_box", gt_box), ("motion", motion)):
                    arrays[f"{local}.{name}"] = arr
                cand |= {"local": local, "identity": identity, "n_frames": b - a,
                         "mean_score": float(np.nanmean(sc)) if np.any(~np.isnan(sc)) else float("nan"),
                         "median_face_px": T.face_px(bx)}
            out.append(cand)
    return out


def process_source(job: SourceJob) -> dict[str, Any]:
    """Decode one job's frames once: find the cuts, track faces in every segment (the parts of shots inside the job),
    write the tube arrays to ``job.bundle``; returns the part record ``{cuts, segments, stats}``."""
    p = job.params
    det_name = detector_for(job.source["domain"], p)
    gt = _load_gt(job.gt)
    finder: C.CutFinder | None = None  # made at the first frame (its size and rate)
    delay = C.CutFinder.delay_for(job.cuts)
    warm_from = max(0, job.start - warmup_frames(job.cuts)) if job.start > 0 else 0
    read_to = None if job.end is None else job.end + delay + 1
    found: set[int] = set()
    pending: deque[DecodedFrame] = deque()
    segments: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    cur: _ShotTracker | None = None
    width = height = 0
    n_decoded = n_detect = 0
    video_end = -1

    def release(fr: DecodedFrame, is_last: bool) -> None:
        nonlocal cur, n_detect
        i = fr.index
        if cur is None or i in found:
            if cur is not None:  # cannot happen: the frame before a cut is released as its segment's last
                raise RuntimeError(f"segment at {cur.start} not closed before the cut at {i}")
            cur = _ShotTracker(len(segments), i, det_name, p)
        cur.push(i, fr, last=is_last)
        if is_last:
            tracked = cur.finish()
            n_detect += cur.n_detect
            segments.append({"start": cur.start, "end": cur.end, "tracked": bool(tracked),
                             "tubes": _tube_candidates(job, len(segments), tracked, width, height, det_name, gt,
                                                       arrays)})
            cur = None

    def is_cut(i: int) -> bool:
        return i in found or (job.end is not None and i == job.end)

    for fr in decode(job.video, warm_from, read_to, seek=True):
        if finder is None:
            finder = C.CutFinder(job.cuts, fr.width, fr.rate)
        n_decoded += 1
        width, height = fr.width, fr.height
        video_end = fr.index + 1
        found.update(c for c in finder.push(fr) if job.start < c and (job.end is None or c < job.end))
        if fr.index >= job.start and (job.end is None or fr.index < job.end):
            pending.append(fr)
        while pending and pending[0].index + 1 + delay <= fr.index:  # every cut up to it is known
            done = pending.popleft()
            release(done, is_cut(done.index + 1))
    if finder is not None:
        found.update(c for c in finder.finish() if job.start < c and (job.end is None or c < job.end))
    n_frames = int(job.source.get("n_frames") or 0) or probe(job.video).n_frames
    expected = n_frames if job.end is None else min(n_frames, job.end)
    if video_end < expected * 0.99 - 1 or (job.end is not None and video_end < job.end):
        # PyAV stops quietly at a truncated file's end of data
        raise MediaError(f"corrupt video {job.video}: decoding stopped at frame {max(video_end, 0)} of {n_frames}",
                         hint="re-download or remove it")
    while pending:
        done = pending.popleft()
        release(done, not pending or is_cut(done.index + 1))
    with atomic_path(job.bundle) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    owned_end = video_end if job.end is None else job.end
    return {"cuts": sorted(found), "segments": segments, "end": owned_end,
            "stats": {"frames": owned_end - job.start, "decoded": n_decoded, "detections": n_detect,
                      "width": width, "height": height}}
