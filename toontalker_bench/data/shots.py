"""The ``shots`` stage: the shot table, ``data/shots/shots.parquet``, from the cuts the faces stage found.

Shot cuts cost no decoding of their own: the faces stage hands every frame it decodes to PySceneDetect's detectors
(:mod:`.cuts`) and writes every shot they delimit to ``data/faces/cuts.parquet`` (``kept`` = at least
``shots.min_shot_frames`` long; the faces stage tracks faces in kept shots only). This stage reads that list and
writes the kept shots with their times, and a report: shots, short shots dropped, frames, and the sources whose video
could not be decoded (the faces stage's ``source_error`` rejects). :func:`detect_shots` runs the same cut finder over
one video on its own.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.config import Params, ShotsParams, view
from ..core.errors import MediaError
from ..core.executors import Executor
from ..core.io import read_table, write_table
from ..core.video import decode, probe
from .cuts import CutFinder, check_params, shots_from_cuts
from .stage import Job, Stage

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape.out_dir", "faces.out_dir", "shots.out_dir", "shots.detector")

TABLE_COLUMNS = ("source_id", "shot", "start_frame", "end_frame", "start_s", "end_s", "fps")


def detect_shots(video: str | Path, p: ShotsParams) -> dict[str, Any]:
    """Run the cut finder over one video. Returns ``shots`` [(start, end_exclusive)] at least ``min_shot_frames``
    long, ``dropped`` (the shorter ones), ``fps`` and ``frames`` (decoded)."""
    check_params(p)
    info = probe(video)  # MediaError for a truncated / non-video file
    finder = CutFinder(p, info.width, info.fps)
    cuts: list[int] = []
    frames = 0
    for fr in decode(video):  # MediaError naming the file and frame for a decode error part-way
        frames += 1
        cuts += finder.push(fr)
    cuts += finder.finish()
    if frames < info.n_frames * 0.99 - 1:  # PyAV stops quietly at a truncated file's end of data
        raise MediaError(f"corrupt video {video}: decoding stopped at frame {frames} of {info.n_frames}")
    shots, dropped = [], 0
    for a, b in shots_from_cuts(cuts, 0, frames):
        if b - a < max(1, p.min_shot_frames):
            dropped += 1
        else:
            shots.append((a, b))
    return {"shots": shots, "dropped": dropped, "fps": info.fps, "frames": frames}


def _process(job: tuple[str, float, list[tuple[int, int, int, bool]]]) -> dict[str, Any]:
    """The part record of one source: its kept shots (with times), the short ones dropped, frames."""
    _, fps, rows = job
    shots = [(k, a, b) for k, a, b, kept in rows if kept]
    return {"shots": [(k, a, b, a / fps, b / fps) for k, a, b in shots], "fps": fps,
            "dropped": sum(1 for *_, kept in rows if not kept), "frames": max((b for _, _, b, _ in rows), default=0)}


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Write the shot table of every source the faces stage decoded; returns the report."""
    params = view(params, READS)
    raw, faces = Path(params.scrape.out_dir), Path(params.faces.out_dir)
    sources = read_table(raw / "sources.parquet", "scrape table (sources.parquet)")
    cuts = read_table(faces / "cuts.parquet", "cut list (data/faces/cuts.parquet, written by the faces stage)")
    rejects = read_table(faces / "rejects.parquet", "faces rejects (data/faces/rejects.parquet)")
    ok = sources[sources.status == "ok"]
    fps = dict(zip(ok.source_id, ok.fps.astype(float)))
    stage = Stage("shots", params.shots.out_dir, params, executor)
    jobs = []
    for sid, g in cuts.groupby("source_id", sort=True):
        rows = [(int(r.shot), int(r.start_frame), int(r.end_frame), bool(r.kept)) for r in g.itertuples()]
        key = hashlib.sha256(f"{fps.get(sid, 0.0)!r}:{rows!r}".encode()).hexdigest()[:16]
        jobs.append(Job(str(sid), key, (str(sid), fps.get(sid, 25.0) or 25.0, rows)))
    done = stage.run_jobs(jobs, _process, desc="shots")
    failed = rejects[rejects.reason == "source_error"]
    failures = {str(r.source_id): str(r.detail) for r in failed.itertuples()}
    failures.update(done.failures)
    rows = []
    for sid in ok.source_id:  # source order of the scrape table, shots in time order: deterministic
        res = done.parts.get(sid)
        for k, a, b, sa, sb in res["shots"] if res else ():
            rows.append((sid, k, a, b, sa, sb, float(res["fps"])))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(
        {"shot": "int64", "start_frame": "int64", "end_frame": "int64", "start_s": "float64", "end_s": "float64",
         "fps": "float64"})
    write_table(stage.out / "shots.parquet", table)
    parts = done.parts.values()
    frames = sum(r["frames"] for r in parts)
    report = {
        "stage": "shots",
        "detector": params.shots.detector,
        "sources": len(ok),
        "sources_failed_in_scrape": int((sources.status != "ok").sum()),
        "ok": len(done.parts),
        "failed": len(failures),
        "shots": len(table),
        "dropped_short_shots": int(sum(r["dropped"] for r in parts)),
        "frames": int(frames),
        "failures": [{"source_id": k, "reason": failures[k]} for k in sorted(failures)],
    }
    res = stage.finish(report, {"skipped_done": done.resumed})
    log.info("shots: %d shots in %d/%d sources (%d failed, %d short shots dropped), %d frames, %.1fs -> %s",
             len(table), len(done.parts), len(ok), len(failures), report["dropped_short_shots"], frames,
             res["wall_seconds"], stage.out / "shots.parquet")
    return res
