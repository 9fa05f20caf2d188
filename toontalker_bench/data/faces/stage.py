"""The ``faces`` stage: shots -> face tubes with per-frame boxes, scores and landmarks.

Each source video is decoded once, front to back. Inside a shot the detector runs every ``detect_every`` frames (and
on the shot's last frame), ``DETECT_BATCH`` such frames per call; detections are linked into tracks and boxes
interpolated in between; only the frames since the oldest open track's last detection (and those awaiting their
detection batch) are kept in memory, so landmarks for interpolated frames are computed as soon as the next detection
confirms the track. Tubes are then split (VoxCeleb's rules) and filtered; every rejected shot or
tube is recorded with a reason. In ``tracks/<tube_id>.npz``, ``scores`` is NaN on tracked (interpolated) frames;
``landmarks68``/``landmarks5`` come from the landmark model on every frame (with ``landmarks_every`` = k > 1: on every
k-th frame of the shot and on detection frames, linearly interpolated in between); ``frames`` holds the absolute frame
indices, and for demo sources ``gt_box``/``motion`` carry the ground truth wherever the GT face overlaps the tube (else
NaN). The tube's identity is the most frequent matched GT identity, else the manifest's identity, else the source id.

Resumable (:mod:`..stage`): every finished source writes its tubes' ``tracks/<tube_id>.npz`` and then its part
record, keyed by a hash of the inputs and params; a rerun skips sources whose part matches. The final tables are
assembled from the part records only, so a killed run leaves nothing a rerun would count.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...config import FacesParams, Params, to_dict, view
from ...errors import ConfigError, MediaError
from ...executors import Executor
from ...io import atomic_path, read_table, sha256_file, write_table
from ...video import iter_frames
from ..stage import Job, Stage
from . import track as T

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape.out_dir", "shots.out_dir", "faces")

TUBE_COLUMNS = ["tube_id", "source_id", "domain", "identity", "shot", "start_frame", "end_frame", "n_frames",
                "mean_score", "median_face_px", "detector"]
REJECT_COLUMNS = ["source_id", "shot", "tube_id", "start_frame", "end_frame", "reason", "detail"]
GT_MATCH_IOU = 0.3  # a GT box belongs to a tube frame when they overlap at least this much
SHARP_PX = 64  # face patches are resized to this side before measuring sharpness, so sizes compare
DETECT_BATCH = 4  # detection frames per detector call: RetinaFace runs ~30% faster per frame in batches of 4


@dataclass
class SourceJob:
    source: dict[str, Any]
    shots: list[tuple[int, int, int]]  # (shot, start_frame, end_frame)
    video: str
    gt: str  # "" = no ground truth
    params: FacesParams
    out_dir: str


@dataclass
class _Open:
    """Per-track per-frame results, filled as frames are confirmed."""

    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    lm: dict[int, np.ndarray] = field(default_factory=dict)
    sharp: list[float] = field(default_factory=list)


def detector_for(domain: str, p: FacesParams) -> str:
    if domain not in ("real", "cartoon"):
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


def landmarks(frame: np.ndarray, boxes: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 68, 2)`` (NaN with a 5-point model) and ``(N, 5, 2)`` landmarks for ``boxes``."""
    from ...faces.landmarks import five_from_68, get_landmarker

    pts = np.asarray(get_landmarker(name).predict(frame, boxes), dtype=np.float32)
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
    """Ground truth along a tube: per-frame GT box ``(T, 4)`` where the GT face overlaps the tube, motion ``(T, 20)``
    where the GT face is the tube's face (overlapping, or annotated without a box), both NaN elsewhere; the identity
    (most frequent such GT identity, else ``fallback_identity``); and whether the GT knows this face at all."""
    n = len(frames)
    gt_box = np.full((n, 4), np.nan, np.float32)
    motion = np.full((n, 20), np.nan, np.float32)
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


def _fill_landmarks(lm: dict[int, np.ndarray], frames: list[int]) -> None:
    """Landmarks of ``frames`` (sorted) linearly interpolated from the nearest frames either side that have them.

    Both neighbours exist: a track's previous frame and the detection frame that extends it always get landmarks.
    """
    known = sorted(lm)
    for f in frames:
        j = bisect.bisect(known, f)
        a, b = known[j - 1], known[j]
        lm[f] = (lm[a] + (lm[b] - lm[a]) * np.float32((f - a) / (b - a))).astype(np.float32)


class _ShotTracker:
    """Detect / link / interpolate / landmark one shot, streaming its frames."""

    def __init__(self, shot: int, start: int, end: int, det_name: str, p: FacesParams) -> None:
        self.shot, self.start, self.end = shot, start, end
        self.det_name, self.p = det_name, p
        self.linker = T.Linker(p.link_iou, p.max_gap)
        self.buffer: dict[int, np.ndarray] = {}
        self.data: dict[int, _Open] = {}  # id(track) -> per-frame data
        self.queued: list[int] = []  # detection frames waiting for their batch
        self.n_detect = 0

    def _is_detect_frame(self, i: int) -> bool:
        return (i - self.start) % self.p.detect_every == 0 or i == self.end - 1

    def push(self, i: int, frame: np.ndarray) -> None:
        self.buffer[i] = frame
        if not self._is_detect_frame(i):
            return
        self.queued.append(i)
        if len(self.queued) == DETECT_BATCH or i == self.end - 1:
            self._flush()

    def _flush(self) -> None:
        """Detect on the queued frames in one batch, then link / interpolate / landmark them in frame order."""
        if not self.queued:
            return
        queued, self.queued = self.queued, []
        self.n_detect += len(queued)
        for i, (boxes, scores) in zip(queued, detect([self.buffer[i] for i in queued], self.det_name,
                                                     self.p.detect_max_side)):
            self._step(i, boxes, scores)

    def _step(self, i: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        frame = self.buffer[i]
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
        pending: dict[int, tuple[_Open, list[int]]] = {}  # id(od) -> frames whose landmarks are interpolated
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
            _fill_landmarks(od.lm, frames)
        keep_from = min((t.frames[-1] for t in self.linker.active), default=i)  # later frames are kept as well
        for f in [f for f in self.buffer if f < keep_from]:
            del self.buffer[f]

    def finish(self) -> list[tuple[T.Track, _Open]]:
        self._flush()  # the video ended before the shot's last (always detected) frame
        tracks = self.linker.finish()
        self.buffer.clear()
        return [(t, self.data[id(t)]) for t in tracks]


def _tubes_of_shot(job: SourceJob, shot: int, tracked: list[tuple[T.Track, _Open]], width: int, height: int,
                   det_name: str, gt: pd.DataFrame | None) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """Split and filter one shot's tracks -> (kept tube rows, reject rows, tube_id -> arrays)."""
    p = job.params
    sid = job.source["source_id"]
    fallback_id = str(job.source.get("identity") or "") or sid
    kept: list[dict] = []
    rejects: list[dict] = []
    arrays: dict[str, dict] = {}
    k = 0
    for tr, od in tracked:
        frames = np.array(sorted(od.boxes), dtype=np.int64)
        boxes = np.stack([od.boxes[f] for f in frames])
        lm = np.stack([od.lm[f] for f in frames])
        det_at = {f: s for f, s in zip(tr.frames, tr.scores)}
        scores = np.array([det_at.get(int(f), np.nan) for f in frames], dtype=np.float32)
        detected = np.array([int(f) in det_at for f in frames])
        sharp = float(np.median(od.sharp)) if od.sharp else 0.0
        for a, b in T.split_tube(boxes, p.iou_split, p.max_tube_frames):
            tube_id = f"{sid}-s{shot:03d}-t{k:02d}"
            k += 1
            fr, bx = frames[a:b], boxes[a:b]
            sc = scores[a:b]
            reason = T.filter_reason(b - a, bx, sc[~np.isnan(sc)], sharp, width=width, height=height,
                                     min_frames=p.min_frames, min_face_px=p.min_face_px, min_score=p.min_score,
                                     min_sharpness=p.min_sharpness, border_margin=p.border_margin)
            gt_box, motion, identity, known = _gt_arrays(gt, fr, bx, fallback_id)
            if not reason and not known:
                reason = "not_in_ground_truth"  # a face the demo annotations do not know (e.g. in the background)
            if reason:
                rejects.append({"source_id": sid, "shot": shot, "tube_id": tube_id, "start_frame": int(fr[0]),
                                "end_frame": int(fr[-1]) + 1, "reason": reason, "detail": ""})
                continue
            arrays[tube_id] = {"frames": fr, "boxes": bx.astype(np.float32), "scores": sc,
                               "landmarks68": lm[a:b, :68].astype(np.float32),
                               "landmarks5": lm[a:b, 68:].astype(np.float32), "detected": detected[a:b],
                               "gt_box": gt_box, "motion": motion}
            kept.append({"tube_id": tube_id, "source_id": sid, "domain": job.source["domain"], "identity": identity,
                         "shot": shot, "start_frame": int(fr[0]), "end_frame": int(fr[-1]) + 1, "n_frames": b - a,
                         "mean_score": float(np.nanmean(sc)) if np.any(~np.isnan(sc)) else float("nan"),
                         "median_face_px": T.face_px(bx), "detector": det_name})
    if not tracked:
        rejects.append({"source_id": sid, "shot": shot, "tube_id": "", "start_frame": -1, "end_frame": -1,
                        "reason": "no_face", "detail": ""})
    return kept, rejects, arrays


def _shot_reject(job: SourceJob, shot: tuple[int, int, int], reason: str, detail: str = "") -> dict:
    return {"source_id": job.source["source_id"], "shot": shot[0], "tube_id": "", "start_frame": shot[1],
            "end_frame": shot[2], "reason": reason, "detail": detail}


def process_source(job: SourceJob) -> dict[str, Any]:
    """Decode one source once, write its tubes' npz files and return its part record ``{tubes, rejects, stats}``."""
    p = job.params
    det_name = detector_for(job.source["domain"], p)
    gt = _load_gt(job.gt)
    out = Path(job.out_dir)
    shots = sorted(job.shots, key=lambda s: s[1])
    rejects: list[dict] = [_shot_reject(job, s, "empty_shot") for s in shots if s[2] <= s[1]]
    shots = [s for s in shots if s[2] > s[1]]
    tubes: list[dict] = []
    arrays: dict[str, dict] = {}
    n_frames = n_detect = 0
    si = 0
    cur: _ShotTracker | None = None
    width = height = 0
    last = max((s[2] for s in shots), default=0)

    def close(tracker: _ShotTracker) -> None:
        nonlocal n_detect
        n_detect += tracker.n_detect
        kt, rj, ar = _tubes_of_shot(job, tracker.shot, tracker.finish(), width, height, det_name, gt)
        tubes.extend(kt)
        rejects.extend(rj)
        arrays.update(ar)

    error = ""
    try:
        for i, frame in enumerate(iter_frames(job.video, 0, last)):
            n_frames += 1
            height, width = frame.shape[:2]
            if cur is not None and i >= cur.end:
                close(cur)
                cur = None
            while si < len(shots) and shots[si][2] <= i:  # overlaps a shot already done
                rejects.append(_shot_reject(job, shots[si], "overlapping_shot"))
                si += 1
            if cur is None and si < len(shots) and shots[si][1] <= i:
                shot, a, b = shots[si]
                cur = _ShotTracker(shot, a, b, det_name, p)
                si += 1
            if cur is not None:
                cur.push(i, frame)
    except MediaError as e:
        error = str(e)
    if cur is not None:
        if error:
            rejects.append(_shot_reject(job, (cur.shot, cur.start, cur.end), "decode_error", error))
        else:
            cur.end = min(cur.end, n_frames)  # video shorter than the shot table says
            close(cur)
    rejects += [_shot_reject(job, s, "decode_error" if error else "past_end", error) for s in shots[si:]]
    for tube_id, arr in arrays.items():
        with atomic_path(out / "tracks" / f"{tube_id}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arr)
    stats = {"frames": n_frames, "detections": n_detect, "width": width, "height": height}
    return {"tubes": tubes, "rejects": rejects, "stats": stats}


def _key(source: dict, shots: list, p: FacesParams, files: list[str]) -> str:
    """Names the inputs of one source's work: its row, shots, params (not out_dir) and files' content."""
    stats = [[Path(f).name, sha256_file(f)] if os.path.exists(f) else [Path(f).name] for f in files]
    blob = json.dumps([source, shots, to_dict(p) | {"out_dir": None}, stats], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jobs(params: Params) -> tuple[list[Job], list[dict]]:
    p = params.faces
    raw = Path(params.scrape.out_dir)
    sources = read_table(raw / "sources.parquet", "sources table")
    shots = read_table(Path(params.shots.out_dir) / "shots.parquet", "shot table")
    by_src = {sid: [(int(r.shot), int(r.start_frame), int(r.end_frame)) for r in g.itertuples()]
              for sid, g in shots.groupby("source_id", sort=True)}
    jobs: list[Job] = []
    rejects: list[dict] = []
    for row in sources.sort_values("source_id").to_dict("records"):
        sid = str(row["source_id"])
        if row.get("status") != "ok":
            rejects.append({"source_id": sid, "shot": -1, "tube_id": "", "start_frame": -1, "end_frame": -1,
                            "reason": "source_failed", "detail": str(row.get("reason") or "")})
            continue
        src = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        detector_for(str(src["domain"]), p)
        sh = by_src.get(sid, [])
        if not sh:
            rejects.append({"source_id": sid, "shot": -1, "tube_id": "", "start_frame": -1, "end_frame": -1,
                            "reason": "no_shots", "detail": ""})
            continue
        gt = str(raw / str(row["gt_path"])) if row.get("gt_path") else ""
        video = str(raw / str(row["path"]))
        jobs.append(Job(sid, _key(src, sh, p, [video, gt] if gt else [video]), SourceJob(src, sh, video, gt, p, p.out_dir)))
    return jobs, rejects


def _complete(out: Path):  # noqa: ANN202 - part record -> bool
    return lambda part: all((out / "tracks" / f"{t['tube_id']}.npz").is_file() for t in part["tubes"])


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Run the faces stage; returns (and writes) the report."""
    params = view(params, READS)
    p = params.faces
    if p.detect_every < 1:
        raise ConfigError(f"faces.detect_every must be >= 1, got {p.detect_every}")
    if p.landmarks_every < 1:
        raise ConfigError(f"faces.landmarks_every must be >= 1, got {p.landmarks_every}",
                          hint="1 runs the landmark model on every frame")
    stage = Stage("faces", p.out_dir, params, executor)
    out = stage.out
    jobs, rejects = _jobs(params)
    done = stage.run_jobs(jobs, process_source, complete=_complete(out), desc="faces")
    for sid, reason in done.failures.items():
        rejects.append({"source_id": sid, "shot": -1, "tube_id": "", "start_frame": -1, "end_frame": -1,
                        "reason": "source_error", "detail": reason})
    parts = done.ordered()
    tubes = [t for part in parts for t in part["tubes"]]
    rejects += [r for part in parts for r in part["rejects"]]
    tube_df = pd.DataFrame(tubes, columns=TUBE_COLUMNS).sort_values("tube_id", kind="stable").reset_index(drop=True)
    rej_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values(
        ["source_id", "shot", "start_frame", "tube_id", "reason"], kind="stable").reset_index(drop=True)
    for col in ("shot", "start_frame", "end_frame", "n_frames"):
        tube_df[col] = tube_df[col].astype("int64")
    for col in ("shot", "start_frame", "end_frame"):
        rej_df[col] = rej_df[col].astype("int64")
    write_table(out / "tubes.parquet", tube_df)
    write_table(out / "rejects.parquet", rej_df)
    keep = set(tube_df["tube_id"])
    for f in (out / "tracks").glob("*.npz") if (out / "tracks").is_dir() else []:
        if f.stem not in keep:
            f.unlink()
    frames = sum(part["stats"]["frames"] for part in parts)
    report = {
        "sources": len(jobs), "sources_failed": int((rej_df["reason"] == "source_error").sum()),
        "tubes": len(tube_df), "tubes_by_domain": {str(k): int(v) for k, v in tube_df.groupby("domain").size().items()},
        "rejects": {str(k): int(v) for k, v in rej_df.groupby("reason").size().items()},
        "frames_decoded": frames, "detections": sum(part["stats"]["detections"] for part in parts),
        "detectors": {"real": p.real_detector, "cartoon": p.cartoon_detector},
    }
    res = stage.finish(report, {"sources_resumed": done.resumed, "work_seconds": round(done.work_seconds, 2),
                                "frames_per_second": done.rate(lambda part: part["stats"]["frames"])})
    log.info("faces: %d tubes from %d sources (%d resumed), %d rejects %s, %d frames in %.1fs (%.1f fps/worker)",
             report["tubes"], len(jobs), done.resumed, len(rej_df), report["rejects"], frames, res["wall_seconds"],
             res["frames_per_second"] or 0)
    return res
