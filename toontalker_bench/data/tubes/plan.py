"""The tubes stage's planner: sources and params -> jobs (one per source, or per chunk of a long one).

A source longer than ``1.5 * tubes.chunk_seconds`` is cut into chunks of ``chunk_seconds`` that run as separate jobs
(in parallel with ``workers`` > 1); which chunks a source has depends on its length and the params only, never on the
number of workers. Each job is keyed by a hash of its source row, the params, its files' content and its frame span,
so a rerun skips the jobs whose part record matches (:mod:`..stage`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ...core.config import CutsParams, Params, TubesParams, to_dict
from ...core.errors import ConfigError
from ...core.io import read_table, sha256_file
from .. import cuts as C
from ..stage import Job
from .worker import BETWEEN, SourceJob, detector_for


def check_params(p: TubesParams, cuts: CutsParams) -> None:
    """ConfigError for knobs the worker cannot run with (the cut finder's included)."""
    if p.detect_every < 1:
        raise ConfigError(f"tubes.detect_every must be >= 1, got {p.detect_every}")
    if p.landmarks_every < 1:
        raise ConfigError(f"tubes.landmarks_every must be >= 1, got {p.landmarks_every}",
                          hint="1 runs the landmark model on every frame")
    if p.landmarks_between not in BETWEEN:
        raise ConfigError(f"unknown tubes.landmarks_between {p.landmarks_between!r}",
                          hint=f"use one of {', '.join(BETWEEN)}")
    if p.chunk_seconds < 0:
        raise ConfigError(f"tubes.chunk_seconds must be >= 0, got {p.chunk_seconds}", hint="0 = never chunk")
    C.check_params(cuts)


def _file_stats(files: list[str]) -> list[list[str]]:
    return [[Path(f).name, sha256_file(f)] if os.path.exists(f) else [Path(f).name] for f in files]


def _key(source: dict, p: TubesParams, cuts: CutsParams, stats: list, span: tuple[int, int | None]) -> str:
    """Names the inputs of one job's work: its source row, params (not out_dir), files' content and frame span."""
    blob = json.dumps([source, to_dict(p) | {"out_dir": None}, to_dict(cuts), stats, list(span)], sort_keys=True,
                      default=str)
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

def plan_jobs(params: Params, parts_dir: Path) -> tuple[list[Job], dict[str, list[str]], list[dict]]:
    """The jobs (one per source, or per chunk of a long one), each source's job ids in frame order, and the rejects
    of sources that cannot run."""
    p, cuts = params.tubes, params.cuts
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
            jobs.append(Job(jid, _key(src, p, cuts, stats, (a, b)),
                            SourceJob(src, video, gt, p, cuts, str(parts_dir / f"{jid}.npz"), a, b, k),
                            cost=((b if b is not None else max(n, a + 1)) - a) * pixels))
        by_source[sid] = ids
    return jobs, by_source, rejects
