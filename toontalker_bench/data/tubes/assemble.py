"""The tubes stage's assembler: the jobs' part records -> ``cuts.parquet``, ``tubes.parquet``, ``rejects.parquet``
and ``tracks/<tube_id>.npz``.

Shot and tube ids number the shots and tubes of the whole source, so they are given here, from the part records only
(in frame order): a killed run leaves nothing a rerun would count. Every shot the cut finder delimited goes to the cut
list (``kept`` = at least ``cuts.min_shot_frames`` long; shorter ones were not tracked); every rejected shot or tube
goes to the rejects with a reason.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.config import TubesParams
from ...core.io import atomic_path, write_json, write_table
from .. import cuts as C
from ..stage import Outcome
from .worker import detector_for

TUBE_COLUMNS = ["tube_id", "source_id", "domain", "identity", "shot", "start_frame", "end_frame", "n_frames",
                "mean_score", "median_face_px", "detector"]
REJECT_COLUMNS = ["source_id", "shot", "tube_id", "start_frame", "end_frame", "reason", "detail"]
CUT_COLUMNS = ["source_id", "shot", "start_frame", "end_frame", "kept"]
ARRAYS = ("frames", "boxes", "scores", "landmarks68", "landmarks5", "detected", "gt_box", "motion")
TRACKS_INDEX = "tracks.idx"  # in .parts: which job record each tracks/<tube_id>.npz was written from


@dataclass
class _Assembled:
    """What the sources' part records add up to, before it becomes tables."""

    tubes: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    cuts: list[dict] = field(default_factory=list)
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # tube_id -> (job id, key, local)
    frames: int = 0
    detections: int = 0
    dropped: int = 0



def _assemble_source(sid: str, source: dict, parts: list[dict], min_shot: int, det_name: str, acc: _Assembled
                     ) -> None:
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


@dataclass
class Tables:
    tubes: pd.DataFrame
    rejects: pd.DataFrame
    cuts: pd.DataFrame
    frames: int  # frames the jobs own (chunk overlaps not counted twice)
    detections: int
    dropped: int  # shots shorter than cuts.min_shot_frames


def assemble(out: Path, parts_dir: Path, sources: dict[str, dict], by_source: dict[str, list[str]], done: Outcome,
             rejects: list[dict], p: TubesParams, min_shot: int) -> Tables:
    """Write the tables and track files under ``out`` from ``done``'s part records (``by_source``: each source's
    job ids in frame order); ``rejects`` are the planner's (sources that could not run)."""
    acc = _Assembled()
    rejects = list(rejects)
    for sid, ids in sorted(by_source.items()):
        failed = [done.failures[i] for i in ids if i in done.failures]
        if failed:
            rejects.append({"source_id": sid, "shot": -1, "tube_id": "", "start_frame": -1, "end_frame": -1,
                            "reason": "source_error", "detail": failed[0]})
            continue
        _assemble_source(sid, sources[sid], [done.parts[i] for i in ids], min_shot,
                         detector_for(sources[sid]["domain"], p), acc)
    rejects += acc.rejects
    tube_df = pd.DataFrame(acc.tubes, columns=TUBE_COLUMNS).sort_values("tube_id", kind="stable").reset_index(
        drop=True)
    rej_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values(
        ["source_id", "shot", "start_frame", "tube_id", "reason"], kind="stable").reset_index(drop=True)
    cut_df = pd.DataFrame(acc.cuts, columns=CUT_COLUMNS)
    for col in ("shot", "start_frame", "end_frame", "n_frames"):
        tube_df[col] = tube_df[col].astype("int64")
    for col in ("shot", "start_frame", "end_frame"):
        rej_df[col] = rej_df[col].astype("int64")
        cut_df[col] = cut_df[col].astype("int64")
    cut_df["kept"] = cut_df["kept"].astype(bool)
    _write_tracks(out, parts_dir, acc.files)
    write_table(out / "tubes.parquet", tube_df)
    write_table(out / "rejects.parquet", rej_df)
    write_table(out / "cuts.parquet", cut_df)
    return Tables(tube_df, rej_df, cut_df, acc.frames, acc.detections, acc.dropped)
