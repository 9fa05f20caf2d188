"""The ``faces`` stage: sources -> shot cuts and face tubes with per-frame boxes, scores and landmarks, in one decode.

Each source is decoded once, front to back. Every frame goes first to the shot-cut finder (:mod:`..cuts`,
PySceneDetect's detectors on frames subsampled from the YUV planes), then, :attr:`~..cuts.CutFinder.delay` + 1
frames later, when it is known whether a cut follows it, to the face tracker of its shot. Inside a shot the
detector runs every ``detect_every`` frames (and on the shot's last frame), ``DETECT_BATCH`` such frames per call;
detections are linked into tracks and boxes interpolated in between; only the frames since the oldest open track's
last detection (and those awaiting their detection batch) are kept in memory. A frame is converted to RGB only when
something needs its colours: the detector's frames in full, the landmark model's other frames as a crop around the
faces (the same values), the optical flow reads the decoded luma plane. Tubes are then split (VoxCeleb's rules) and
filtered; every rejected shot or tube is recorded with a reason.

Landmarks (``landmarks68``/``landmarks5`` in ``tracks/<tube_id>.npz``) come from the landmark model on every
``landmarks_every``-th frame of the shot and on every detection frame; the frames between are filled by
``landmarks_between``: ``linear`` interpolation, or ``flow`` (:mod:`...faces.flow`: Lucas-Kanade optical flow from
both neighbouring model frames). ``scores`` is NaN on tracked (interpolated) frames; ``frames`` holds the absolute
frame indices, and for demo sources ``gt_box``/``motion`` carry the ground truth wherever the GT face overlaps the
tube (else NaN). The tube's identity is the most frequent matched GT identity, else the manifest's identity, else the
source id.

Shots are not a separate pass: this stage writes every shot the cut finder found to ``cuts.parquet`` (``kept`` =
at least ``shots.min_shot_frames`` long; shorter ones are not tracked), and the ``shots`` stage turns that into
``data/shots/shots.parquet``.

A source longer than ``1.5 * faces.chunk_seconds`` is cut into chunks of ``chunk_seconds`` that run as separate jobs
(in parallel with ``workers`` > 1): a chunk decodes from the key frame before its start (its cut finder warms up on
the ``WARMUP`` frames before it) to a little past its end, and its end ends tracks as a cut does (tubes split there;
which chunks a source has depends on its length and the params only, never on the number of workers).

Resumable (:mod:`..stage`): a job (a source, or a chunk of one) writes its tube arrays to ``.parts/<id>.npz`` and
then its part record ``.parts/<id>.json``, keyed by a hash of the inputs and params; a rerun skips jobs whose part
matches. The tables and ``tracks/<tube_id>.npz`` are assembled from the part records only (tube ids number the
shots and tubes of the whole source, so they are given there), so a killed run leaves nothing a rerun would count.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...core.config import FacesParams, Params, ShotsParams, to_dict, view
from ...core.domains import DOMAINS
from ...core.errors import ConfigError, MediaError
from ...core.executors import Executor
from ...faces.pose import POSE_DIM
from ...core.io import atomic_path, read_table, sha256_file, write_json, write_table
from ...core.video import DecodedFrame, decode, probe
from .. import cuts as C
from ..stage import Job, Stage
from . import track as T

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape.out_dir", "shots.detector", "shots.threshold", "shots.adaptive_threshold", "shots.min_shot_frames",
         "shots.downscale_width", "faces")

TUBE_COLUMNS = ["tube_id", "source_id", "domain", "identity", "shot", "start_frame", "end_frame", "n_frames",
                "mean_score", "median_face_px", "detector"]
REJECT_COLUMNS = ["source_id", "shot", "tube_id", "start_frame", "end_frame", "reason", "detail"]
CUT_COLUMNS = ["source_id", "shot", "start_frame", "end_frame", "kept"]
ARRAYS = ("frames", "boxes", "scores", "landmarks68", "landmarks5", "detected", "gt_box", "motion")
GT_MATCH_IOU = 0.3  # a GT box belongs to a tube frame when they overlap at least this much
SHARP_PX = 64  # face patches are resized to this side before measuring sharpness, so sizes compare
DETECT_BATCH = 4  # detection frames per detector call: RetinaFace runs ~30% faster per frame in batches of 4
BETWEEN = ("linear", "flow")
LANDMARK_MARGIN = 0.6  # the landmark model's crop extends this fraction of the box side beyond the box (exact: see
#                        tests/test_faces_landmarks_every.py)
TRACKS_INDEX = "tracks.idx"  # in .parts: which job record each tracks/<tube_id>.npz was written from


def warmup_frames(shots: ShotsParams) -> int:
    """Frames a chunk's cut finder sees before the chunk starts, so that it is in the state a finder that started at
    the video's first frame would be in (its flash filter looks back ``min_shot_frames``)."""
    return 2 * (2 * shots.min_shot_frames + 2)


@dataclass
class SourceJob:
    source: dict[str, Any]
    video: str
    gt: str  # "" = no ground truth
    params: FacesParams
    shots: ShotsParams  # the cut finder's knobs
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


def detector_for(domain: str, p: FacesParams) -> str:
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}", hint="domains are real and cartoon")
    return p.real_detector if domain == "real" else p.cartoon_detector


def check_params(p: FacesParams) -> None:
    if p.detect_every < 1:
        raise ConfigError(f"faces.detect_every must be >= 1, got {p.detect_every}")
    if p.landmarks_every < 1:
        raise ConfigError(f"faces.landmarks_every must be >= 1, got {p.landmarks_every}",
                          hint="1 runs the landmark model on every frame")
    if p.landmarks_between not in BETWEEN:
        raise ConfigError(f"unknown faces.landmarks_between {p.landmarks_between!r}",
                          hint=f"use one of {', '.join(BETWEEN)}")
    if p.chunk_seconds < 0:
        raise ConfigError(f"faces.chunk_seconds must be >= 0, got {p.chunk_seconds}", hint="0 = never chunk")


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
    """Ground truth along a tube: per-frame GT box ``(T, 4)`` where the GT face overlaps the tube, motion ``(T, POSE_DIM)``
    where the GT face is the tube's face (overlapping, or annotated without a box), both NaN elsewhere; the identity
    (most frequent such GT identity, else ``fallback_identity``); and whether the GT knows this face at all."""
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

    def __init__(self, shot: int, start: int, det_name: str, p: FacesParams) -> None:
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
    delay = C.CutFinder.delay_for(job.shots)
    warm_from = max(0, job.start - warmup_frames(job.shots)) if job.start > 0 else 0
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
            finder = C.CutFinder(job.shots, fr.width, fr.rate)
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


# --------------------------------------------------------------------------------------------------- jobs
def _file_stats(files: list[str]) -> list[list[str]]:
    return [[Path(f).name, sha256_file(f)] if os.path.exists(f) else [Path(f).name] for f in files]


def _key(source: dict, p: FacesParams, shots: ShotsParams, stats: list, span: tuple[int, int | None]) -> str:
    """Names the inputs of one job's work: its source row, params (not out_dir), files' content and frame span."""
    blob = json.dumps([source, to_dict(p) | {"out_dir": None}, to_dict(shots) | {"out_dir": None}, stats,
                       list(span)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def chunk_spans(n_frames: int, fps: float, chunk_seconds: float) -> list[tuple[int, int | None]]:
    """The frame spans ``[start, end)`` a source is processed in (the last one open-ended): one span unless the
    source is longer than ``1.5 * chunk_seconds``, then chunks of ``chunk_seconds`` (the last one 0.5-1.5 long)."""
    size = int(round(chunk_seconds * fps))
    if chunk_seconds <= 0 or size < 1 or n_frames <= 1.5 * size:
        return [(0, None)]
    starts = list(range(0, n_frames, size))
    if n_frames - starts[-1] < size / 2:
        starts.pop()
    return [(a, b) for a, b in zip(starts, starts[1:] + [None])]


def _cut_knobs(params: Params) -> ShotsParams:
    s = params.shots
    return ShotsParams(out_dir="", detector=s.detector, threshold=s.threshold, adaptive_threshold=s.adaptive_threshold,
                       min_shot_frames=s.min_shot_frames, downscale_width=s.downscale_width)


def _jobs(params: Params, parts_dir: Path) -> tuple[list[Job], dict[str, list[str]], list[dict]]:
    """The jobs (one per source, or per chunk of a long one), each source's job ids in frame order, and the rejects
    of sources that cannot run."""
    p = params.faces
    shots = _cut_knobs(params)
    raw = Path(params.scrape.out_dir)
    sources = read_table(raw / "sources.parquet", "sources table")
    jobs: list[Job] = []
    by_source: dict[str, list[str]] = {}
    rejects: list[dict] = []
    for row in sources.sort_values("source_id").to_dict("records"):
        sid = str(row["source_id"])
        if row.get("status") != "ok":
            rejects.append({"source_id": sid, "shot": -1, "tube_id": "", "start_frame": -1, "end_frame": -1,
                            "reason": "source_failed", "detail": str(row.get("reason") or "")})
            continue
        src = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        detector_for(str(src["domain"]), p)
        gt = str(raw / str(row["gt_path"])) if row.get("gt_path") else ""
        video = str(raw / str(row["path"]))
        stats = _file_stats([video, gt] if gt else [video])
        n, fps = int(row.get("n_frames") or 0), float(row.get("fps") or 0)
        spans = chunk_spans(n, fps, p.chunk_seconds)
        pixels = max(1, int(row.get("width") or 0) * int(row.get("height") or 0))
        ids = []
        for k, (a, b) in enumerate(spans):
            jid = sid if len(spans) == 1 else f"{sid}~c{k:03d}"
            ids.append(jid)
            jobs.append(Job(jid, _key(src, p, shots, stats, (a, b)),
                            SourceJob(src, video, gt, p, shots, str(parts_dir / f"{jid}.npz"), a, b, k),
                            cost=((b if b is not None else max(n, a + 1)) - a) * pixels))
        by_source[sid] = ids
    return jobs, by_source, rejects


def _complete(parts_dir: Path):  # noqa: ANN202 - part record -> bool
    return lambda part: (parts_dir / f"{part['_id']}.npz").is_file() if "_id" in part else False


# --------------------------------------------------------------------------------------------------- assembly
@dataclass
class _Assembled:
    tubes: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    cuts: list[dict] = field(default_factory=list)
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # tube_id -> (job id, key, local)
    frames: int = 0
    detections: int = 0
    dropped: int = 0


def _assemble_source(sid: str, source: dict, parts: list[dict], p: FacesParams, min_shot: int, det_name: str,
                     acc: _Assembled) -> None:
    """Number the shots and tubes of one source from its jobs' part records (in frame order)."""
    end = parts[-1]["end"]
    found = sorted({c for part in parts for c in part["cuts"]})
    shots = C.shots_from_cuts(found, 0, end)
    kept = [b - a >= max(1, min_shot) for a, b in shots]
    starts = [a for a, _ in shots]
    index = {}
    for k, ((a, b), ok) in enumerate(zip(shots, kept)):
        index[k] = sum(kept[:k]) if ok else -1
        acc.cuts.append({"source_id": sid, "shot": index[k], "start_frame": a, "end_frame": b, "kept": ok})
    acc.dropped += kept.count(False)
    per_shot: dict[int, list[tuple[dict, dict]]] = {}
    for part in parts:
        acc.frames += part["stats"]["frames"]
        acc.detections += part["stats"]["detections"]
        for seg in part["segments"]:
            k = bisect.bisect_right(starts, seg["start"]) - 1
            if kept[k]:
                per_shot.setdefault(k, []).append((part, seg))
    for k in sorted(per_shot):
        shot = index[k]
        if not any(seg["tracked"] for _, seg in per_shot[k]):
            acc.rejects.append({"source_id": sid, "shot": shot, "tube_id": "", "start_frame": -1, "end_frame": -1,
                                "reason": "no_face", "detail": ""})
            continue
        t = 0
        for part, seg in per_shot[k]:
            for cand in seg["tubes"]:
                tube_id = f"{sid}-s{shot:03d}-t{t:02d}"
                t += 1
                if cand["reason"]:
                    acc.rejects.append({"source_id": sid, "shot": shot, "tube_id": tube_id,
                                        "start_frame": cand["start_frame"], "end_frame": cand["end_frame"],
                                        "reason": cand["reason"], "detail": ""})
                    continue
                acc.files[tube_id] = (part["_id"], part["key"], cand["local"])
                acc.tubes.append({"tube_id": tube_id, "source_id": sid, "domain": source["domain"],
                                  "identity": cand["identity"], "shot": shot, "start_frame": cand["start_frame"],
                                  "end_frame": cand["end_frame"], "n_frames": cand["n_frames"],
                                  "mean_score": cand["mean_score"], "median_face_px": cand["median_face_px"],
                                  "detector": det_name})


def _write_tracks(out: Path, parts_dir: Path, files: dict[str, tuple[str, str, str]]) -> None:
    """``tracks/<tube_id>.npz`` from the jobs' arrays; a file already written from the same job record is kept.
    Files of tubes no longer in the table are removed."""
    index_path = parts_dir / TRACKS_INDEX
    try:
        written = json.loads(index_path.read_text())
    except (OSError, ValueError):
        written = {}
    tracks = out / "tracks"
    by_job: dict[str, list[str]] = {}
    for tube_id, (jid, _, _) in files.items():
        by_job.setdefault(jid, []).append(tube_id)
    for jid, tube_ids in sorted(by_job.items()):
        todo = [t for t in tube_ids if written.get(t) != list(files[t]) or not (tracks / f"{t}.npz").is_file()]
        if not todo:
            continue
        with np.load(parts_dir / f"{jid}.npz") as z:
            for tube_id in todo:
                local = files[tube_id][2]
                with atomic_path(tracks / f"{tube_id}.npz") as tmp:
                    with open(tmp, "wb") as f:
                        np.savez_compressed(f, **{name: z[f"{local}.{name}"] for name in ARRAYS})
    for f in tracks.glob("*.npz") if tracks.is_dir() else []:
        if f.stem not in files:
            f.unlink()
    write_json(index_path, {t: list(v) for t, v in sorted(files.items())})


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Run the faces stage; returns (and writes) the report."""
    params = view(params, READS)
    p = params.faces
    check_params(p)
    C.check_params(_cut_knobs(params))
    stage = Stage("faces", p.out_dir, params, executor)
    out = stage.out
    jobs, by_source, rejects = _jobs(params, stage.parts_dir)
    done = stage.run_jobs(jobs, _with_id, complete=_complete(stage.parts_dir), desc="faces")
    listed = {j.id for j in jobs}
    for f in stage.parts_dir.glob("*.npz") if stage.parts_dir.is_dir() else []:
        if f.stem not in listed:
            f.unlink()
    sources = {j.payload.source["source_id"]: j.payload.source for j in jobs}
    acc = _Assembled()
    for sid, ids in sorted(by_source.items()):
        failed = [done.failures[i] for i in ids if i in done.failures]
        if failed:
            rejects.append({"source_id": sid, "shot": -1, "tube_id": "", "start_frame": -1, "end_frame": -1,
                            "reason": "source_error", "detail": failed[0]})
            continue
        _assemble_source(sid, sources[sid], [done.parts[i] for i in ids], p, params.shots.min_shot_frames,
                         detector_for(sources[sid]["domain"], p), acc)
    rejects += acc.rejects
    tube_df = pd.DataFrame(acc.tubes, columns=TUBE_COLUMNS).sort_values("tube_id", kind="stable").reset_index(drop=True)
    rej_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values(
        ["source_id", "shot", "start_frame", "tube_id", "reason"], kind="stable").reset_index(drop=True)
    cut_df = pd.DataFrame(acc.cuts, columns=CUT_COLUMNS)
    for col in ("shot", "start_frame", "end_frame", "n_frames"):
        tube_df[col] = tube_df[col].astype("int64")
    for col in ("shot", "start_frame", "end_frame"):
        rej_df[col] = rej_df[col].astype("int64")
        cut_df[col] = cut_df[col].astype("int64")
    cut_df["kept"] = cut_df["kept"].astype(bool)
    _write_tracks(out, stage.parts_dir, acc.files)
    write_table(out / "tubes.parquet", tube_df)
    write_table(out / "rejects.parquet", rej_df)
    write_table(out / "cuts.parquet", cut_df)
    report = {
        "sources": len(by_source), "sources_failed": int((rej_df["reason"] == "source_error").sum()),
        "tubes": len(tube_df), "tubes_by_domain": {str(k): int(v) for k, v in tube_df.groupby("domain").size().items()},
        "rejects": {str(k): int(v) for k, v in rej_df.groupby("reason").size().items()},
        "shots": int(cut_df["kept"].sum()), "dropped_short_shots": acc.dropped,
        "frames_decoded": acc.frames, "detections": acc.detections,
        "detectors": {"real": p.real_detector, "cartoon": p.cartoon_detector},
    }
    new = [done.parts[i] for i in done.new]
    res = stage.finish(report, {"sources_resumed": done.resumed, "jobs": len(jobs),
                                "work_seconds": round(done.work_seconds, 2), "job_seconds": done.job_seconds,
                                "frames_per_second": done.rate(lambda part: part["stats"]["frames"]),
                                "frames_decoded_with_chunk_overlap": sum(x["stats"]["decoded"] for x in new)})
    log.info("faces: %d tubes and %d shots from %d sources (%d jobs, %d resumed), %d rejects %s, %d frames in %.1fs "
             "(%.1f fps/worker)", report["tubes"], report["shots"], len(by_source), len(jobs), done.resumed,
             len(rej_df), report["rejects"], acc.frames, res["wall_seconds"], res["frames_per_second"] or 0)
    return res


def _with_id(job: SourceJob) -> dict[str, Any]:
    """:func:`process_source`, its part record naming the job (the bundle's file name)."""
    return {"_id": Path(job.bundle).stem, **process_source(job)}
