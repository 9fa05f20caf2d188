"""The ``align`` stage: face tubes -> square, unstretched, fixed-size H.264 clips + per-clip annotations.

The crop is a square around the face box, ``(1 + increase)`` times the box's longer side. With ``box_mode: fixed``
one crop (the square around the union of the tube's boxes) holds for the whole clip, so the camera does not move and
head motion stays in the clip (VoxCeleb/FOMM style); with ``box_mode: smooth`` the per-frame square follows the face,
its centre and side smoothed by a moving average of ``smooth_window`` frames. A square that leaves the frame is
padded (``pad``: ``constant`` = black, the default, so no mirrored second face appears; or ``reflect``/``edge``),
never squeezed; the square is then resized to ``size`` px, so the aspect ratio is always preserved.

Only the frames of the tubes are decoded: each run of overlapping tubes from the key frame before it (seeking past
every gap that holds a key frame; the same frames, bit for bit, as decoding from the start), and of each frame only
the crop squares are converted to RGB (the same values as converting the whole frame). A source whose tubes span
more than ``1.5 * align.chunk_seconds`` is split into jobs of tubes spanning about ``chunk_seconds`` each, which run
in parallel with ``workers`` > 1. Finished jobs write their part record (:mod:`.stage`) after their clips, so a
rerun skips them and a killed run leaves only temporary files, which are never counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.config import AlignParams, Params, to_dict, view
from ..core.errors import ConfigError
from ..core.executors import Executor
from ..core.io import atomic_path, read_table, sha256_file, write_table
from ..core.video import DecodedFrame, VideoWriter, decode, key_frames
from .stage import Job, Stage

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape.out_dir", "tubes.out_dir", "align")

CLIP_COLUMNS = ["clip_id", "tube_id", "source_id", "domain", "identity", "n_frames", "fps", "size", "crop_x0",
                "crop_y0", "crop_size", "path", "shot", "start_frame", "end_frame", "median_face_px"]
PAD_MODES = ("constant", "reflect", "edge")


def crop_boxes(boxes: np.ndarray, increase: float, mode: str, window: int) -> np.ndarray:
    """Integer squares ``(T, 3)`` = ``x0, y0, side`` for face ``boxes (T, 4)``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if mode == "fixed":
        u = np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])
        cx, cy = np.full(len(boxes), (u[0] + u[2]) / 2), np.full(len(boxes), (u[1] + u[3]) / 2)
        side = np.full(len(boxes), max(u[2] - u[0], u[3] - u[1]) * (1 + increase))
    elif mode == "smooth":
        cx, cy = _moving_average((boxes[:, 0] + boxes[:, 2]) / 2, window), _moving_average(
            (boxes[:, 1] + boxes[:, 3]) / 2, window)
        side = _moving_average(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), window)
        side = side * (1 + increase)
    else:
        raise ConfigError(f"unknown align.box_mode {mode!r}", hint="use fixed or smooth")
    s = np.maximum(np.round(side), 2).astype(np.int64)
    return np.stack([np.round(cx - s / 2).astype(np.int64), np.round(cy - s / 2).astype(np.int64), s], axis=1)


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < 2:
        return x.astype(np.float64)
    w = min(window, len(x))
    pad = np.pad(x.astype(np.float64), (w // 2, w - 1 - w // 2), mode="edge")
    return np.convolve(pad, np.ones(w) / w, mode="valid")


def crop_square(frame: np.ndarray | DecodedFrame, x0: int, y0: int, side: int, size: int,
                pad: str = "constant") -> np.ndarray:
    """The ``side``-px square at ``(x0, y0)`` of ``frame``, padded where it leaves the frame, resized to ``size``.

    ``frame`` is an RGB array, or a :class:`DecodedFrame` of which only the square is converted."""
    import cv2

    h, w = (frame.height, frame.width) if isinstance(frame, DecodedFrame) else frame.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ax1 <= ax0 or ay1 <= ay0:
        patch = np.zeros((side, side, 3), np.uint8)
    else:
        patch = (frame.rgb_region(ax0, ay0, ax1, ay1) if isinstance(frame, DecodedFrame)
                 else frame[ay0:ay1, ax0:ax1])
        widths = ((ay0 - y0, y0 + side - ay1), (ax0 - x0, x0 + side - ax1), (0, 0))
        if any(a or b for a, b in widths[:2]):
            if pad == "reflect" and min(patch.shape[:2]) < 2:
                pad = "edge"
            patch = np.pad(patch, widths, mode=pad) if pad != "constant" else np.pad(patch, widths)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)


def to_crop(points: np.ndarray, crops: np.ndarray, size: int) -> np.ndarray:
    """Frame pixels ``(T, ..., 2)`` -> crop pixels, per frame crop ``(T, 3)``."""
    pts = np.asarray(points, dtype=np.float64)
    lead = (len(crops),) + (1,) * (pts.ndim - 2)
    offs = crops[:, :2].astype(np.float64).reshape(lead + (2,))
    scale = (size / crops[:, 2].astype(np.float64)).reshape(lead + (1,))
    return ((pts - offs) * scale).astype(np.float32)


def _box_to_crop(boxes: np.ndarray, crops: np.ndarray, size: int) -> np.ndarray:
    return to_crop(boxes.reshape(-1, 2, 2), crops, size).reshape(-1, 4)


@dataclass
class AlignJob:
    source_id: str
    video: str
    fps: float
    tubes: list[dict[str, Any]]
    tubes_dir: str
    params: AlignParams


def decode_runs(tubes: list[tuple[int, int]], keys: list[int] | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` frame runs to decode for tube spans ``tubes``: overlapping or touching spans are one run, and
    so are spans with no key frame (``keys``) in the gap between them (seeking would decode the gap again)."""
    runs: list[list[int]] = []
    for a, b in sorted(tubes):
        if runs and (a <= runs[-1][1] or (keys is not None and not any(runs[-1][1] < k <= a for k in keys))):
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    return [(a, b) for a, b in runs]


def process_source(job: AlignJob) -> dict[str, Any]:
    """Write every clip of one job (decoding only its tubes' frames); returns its part record."""
    p = job.params
    out = Path(p.out_dir)
    tubes = sorted(job.tubes, key=lambda t: (t["start_frame"], t["tube_id"]))
    plan = []
    for t in tubes:
        with np.load(Path(job.tubes_dir) / "tracks" / f"{t['tube_id']}.npz") as z:
            arr = {k: z[k] for k in z.files}
        crops = crop_boxes(arr["boxes"], p.increase, p.box_mode, p.smooth_window)
        plan.append((t, arr, crops))
    spans = [(t["start_frame"], t["end_frame"]) for t in tubes]
    runs = decode_runs(spans)
    if len(runs) > 1:  # gaps: seek across those that hold a key frame (reading the packets once to know)
        runs = decode_runs(spans, key_frames(job.video))
    writers: dict[str, VideoWriter] = {}
    pngs: dict[str, Path] = {}
    rows: list[dict] = []
    n = 0
    try:
        for a, b in runs:
            for fr in decode(job.video, a, b, seek=True):
                i = fr.index
                n += 1
                for t, arr, crops in plan:
                    j = i - t["start_frame"]
                    if j < 0 or i >= t["end_frame"]:
                        continue
                    cid = t["tube_id"]
                    if cid not in writers:
                        writers[cid] = VideoWriter(out / f"{cid}.mp4", fps=job.fps, crf=p.crf)
                        if p.write_png:
                            pngs[cid] = _fresh_dir(out / f".{cid}.png-tmp")
                    img = crop_square(fr, *(int(v) for v in crops[j]), p.size, p.pad)
                    writers[cid].write(img)
                    if p.write_png:
                        _write_png(pngs[cid] / f"{j:05d}.png", img)
                    if i == t["end_frame"] - 1:
                        rows.append(_finish_clip(t, arr, crops, writers.pop(cid), pngs.pop(cid, None), job, out))
    finally:
        for w in writers.values():
            w.abort()
        for d in pngs.values():
            shutil.rmtree(d, ignore_errors=True)
    done = {r["tube_id"] for r in rows}
    missing = [{"tube_id": t["tube_id"], "reason": "video_ended"} for t, _, _ in plan if t["tube_id"] not in done]
    return {"clips": rows, "rejects": missing, "stats": {"frames": n}}


def _finish_clip(t: dict, arr: dict, crops: np.ndarray, writer: VideoWriter, png_dir: Path | None, job: AlignJob,
                 out: Path) -> dict:
    p = job.params
    cid = t["tube_id"]
    ann = {"landmarks68": to_crop(arr["landmarks68"], crops, p.size),
           "landmarks5": to_crop(arr["landmarks5"], crops, p.size),
           "motion": arr["motion"].astype(np.float32),
           "gt_box": _box_to_crop(arr["gt_box"], crops, p.size),
           "crop": crops.astype(np.int32), "frames": arr["frames"].astype(np.int64)}
    with atomic_path(out / f"{cid}.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **ann)
    writer.close()
    if png_dir is not None:
        final = out / f"{cid}.png"
        shutil.rmtree(final, ignore_errors=True)
        png_dir.rename(final)
    return {"clip_id": cid, "tube_id": cid, "source_id": t["source_id"], "domain": t["domain"],
            "identity": t["identity"], "n_frames": int(t["n_frames"]), "fps": float(job.fps), "size": p.size,
            "crop_x0": int(crops[0, 0]), "crop_y0": int(crops[0, 1]), "crop_size": int(crops[0, 2]),
            "path": f"{cid}.mp4", "shot": int(t["shot"]), "start_frame": int(t["start_frame"]),
            "end_frame": int(t["end_frame"]), "median_face_px": float(t["median_face_px"])}


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img).save(path)


def _jobs(params: Params) -> list[Job]:
    p = params.align
    if p.size < 2 or p.size % 2:
        raise ConfigError(f"align.size must be an even number >= 2, got {p.size}", hint="H.264 needs even sizes")
    if p.pad not in PAD_MODES:
        raise ConfigError(f"unknown align.pad {p.pad!r}", hint=f"use one of {', '.join(PAD_MODES)}")
    if p.box_mode not in ("fixed", "smooth"):
        raise ConfigError(f"unknown align.box_mode {p.box_mode!r}", hint="use fixed or smooth")
    tubes_dir = Path(params.tubes.out_dir)
    raw = Path(params.scrape.out_dir)
    tubes = read_table(tubes_dir / "tubes.parquet", "tube table")
    sources = read_table(raw / "sources.parquet", "sources table").set_index("source_id")
    jobs = []
    for sid, g in tubes.groupby("source_id", sort=True):
        rows = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
                for r in g.sort_values("tube_id").to_dict("records")]
        src = sources.loc[sid]
        video = raw / str(src["path"])
        digest = sha256_file(video) if video.exists() else None
        groups = tube_groups(rows, float(src["fps"]) * p.chunk_seconds)
        pixels = max(1, int(src.get("width") or 0) * int(src.get("height") or 0))
        for k, group in enumerate(groups):
            blob = json.dumps([group, to_dict(p) | {"out_dir": None, "chunk_seconds": None}, str(src["path"]),
                               float(src["fps"]), digest], sort_keys=True, default=str)
            jid = str(sid) if len(groups) == 1 else f"{sid}~g{k:03d}"
            span = max(t["end_frame"] for t in group) - min(t["start_frame"] for t in group)
            jobs.append(Job(jid, hashlib.sha256(blob.encode()).hexdigest()[:16],
                            AlignJob(str(sid), str(video), float(src["fps"]), group, str(tubes_dir), p),
                            cost=span * pixels))
    return jobs


def tube_groups(tubes: list[dict], chunk_frames: float) -> list[list[dict]]:
    """The tubes of one source as one job, or (when they span more than ``1.5 * chunk_frames``) as jobs of tubes
    (in start order) spanning about ``chunk_frames`` each; ``chunk_frames <= 0`` never splits."""
    order = sorted(tubes, key=lambda t: (t["start_frame"], t["tube_id"]))
    span = max(t["end_frame"] for t in order) - min(t["start_frame"] for t in order)
    if chunk_frames <= 0 or span <= 1.5 * chunk_frames:
        return [tubes]
    groups: list[list[dict]] = [[]]
    for t in order:
        if groups[-1] and t["end_frame"] - groups[-1][0]["start_frame"] > chunk_frames:
            groups.append([])
        groups[-1].append(t)
    return [sorted(g, key=lambda t: t["tube_id"]) for g in groups]


def _complete(out: Path):  # noqa: ANN202 - part record -> bool
    return lambda part: all((out / f"{c['clip_id']}{ext}").is_file() for c in part["clips"] for ext in (".mp4", ".npz"))


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Run the align stage; returns (and writes) the report."""
    params = view(params, READS)
    p = params.align
    stage = Stage("align", p.out_dir, params, executor)
    out = stage.out
    jobs = _jobs(params)
    done = stage.run_jobs(jobs, process_source, complete=_complete(out), desc="align")
    parts = done.ordered()
    rows = [c for part in parts for c in part["clips"]]
    df = pd.DataFrame(rows, columns=CLIP_COLUMNS).sort_values("clip_id", kind="stable").reset_index(drop=True)
    write_table(out / "clips.parquet", df)
    _remove_stale(out, set(df["clip_id"]))
    frames = sum(part["stats"]["frames"] for part in parts)
    rejects: dict[str, int] = {}
    for part in parts:
        for r in part["rejects"]:
            rejects[r["reason"]] = rejects.get(r["reason"], 0) + 1
    failed = [{"source_id": k, "reason": v} for k, v in sorted(done.failures.items())]
    report = {"clips": len(df), "clips_by_domain": {str(k): int(v) for k, v in df.groupby("domain").size().items()},
              "sources": len(jobs), "sources_failed": failed, "rejects": rejects, "frames_decoded": frames}
    res = stage.finish(report, {"sources_resumed": done.resumed, "work_seconds": round(done.work_seconds, 2),
                                "job_seconds": done.job_seconds,
                                "frames_per_second": done.rate(lambda part: part["stats"]["frames"])})
    log.info("align: %d clips from %d sources (%d resumed, %d failed), %d frames in %.1fs", len(df), len(jobs),
             done.resumed, len(failed), frames, res["wall_seconds"])
    return res


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop clips that no longer belong to the table (e.g. after a params change)."""
    for f in list(out.glob("*.mp4")) + list(out.glob("*.npz")):
        if f.stem not in keep:
            f.unlink()
    for d in out.glob("*.png"):
        if d.is_dir() and d.stem not in keep:
            shutil.rmtree(d)
