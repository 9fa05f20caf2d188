"""Leaderboard CSVs: one row per (run, task) with full provenance, validated reads, atomic concurrent writes.

``leaderboard/<benchmark>.csv`` columns: the provenance columns below, then ``<metric>``, ``<metric>_backend`` and
``<metric>_note`` (what qualifies the number: not validated on this data, too few frames, KID's spread) for every
metric any published run reported (metric names are those of ``toontalker_bench.metrics.METRICS``, plus the
:data:`FOLLOW` columns read from the relative motion metrics). ``sample_gif`` names the row's sample animation
(animated WebP; GIF in rows published before). Publishing
takes a file lock, reads and validates the whole file, drops the rows of the run id being published (re-publishing
replaces them), adds the new rows and replaces the file atomically — a corrupt file is reported and left untouched.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from ..core.domains import TASKS
from ..core.errors import LeaderboardError
from ..core.io import atomic_path

PROVENANCE = ("run_id", "method", "profile", "task", "dataset_version", "code_commit", "seed", "steps",
              "train_seconds", "device", "date", "size", "sample_gif", "pose_labels", "protocol_version",
              "analysis_size", "bracket", "variant", "protocol_subset", "checkpoint")
#: provenance columns added after files were first written, with the value an older row reads as (rows before
#: protocol versions were recorded are version 1 and analysed faces at the method's size, 0); the file gains the
#: columns at its next publish
ADDED_PROVENANCE = {"pose_labels": "", "protocol_version": "1", "analysis_size": "0", "bracket": "", "variant": "",
                    "protocol_subset": "", "checkpoint": ""}
INT_COLUMNS = ("seed", "steps", "size", "protocol_version", "analysis_size")
METRIC_SUFFIXES = ("_backend", "_note")
LOCK_TIMEOUT_S = 300.0
#: the rows one board cell summarises over seeds (a different training budget is not another seed)
SUMMARY_KEY = ("method", "profile", "variant", "steps", "task")
#: one sample GIF per board cell (quick subset runs and other dataset or protocol versions are cells of their own,
#: so a quick run never takes a whole run's sample)
SAMPLE_GROUP = (*SUMMARY_KEY, "protocol_subset", "dataset_version", "protocol_version")
SAMPLE_SUFFIXES = (".webp", ".gif")  # a run's sample animation, in order of preference (older runs wrote GIFs)
#: board columns that are not metrics of their own: the ``follow`` a relative motion metric reports in its extra, the
#: share of the driver's change the output carries (1 = all of it, 0 = none, as copying the source); direction "one"
FOLLOW = {"pose_follow": "apd_rel_deg", "exp_follow": "aed_exp_rel"}


def csv_path(leaderboard_dir: str | Path, benchmark: str) -> Path:
    return Path(leaderboard_dir) / f"{benchmark}.csv"


def lock(path: Path) -> FileLock:
    """The lock every reader-writer of ``path`` takes."""
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)


def metric_directions() -> dict[str, str]:
    """Every registered metric's direction (``lower`` / ``higher`` is better), in declared order, then the
    :data:`FOLLOW` columns (``one``: 1 is the right answer)."""
    from ..metrics import metric_classes

    return {c.name: c.direction for c in metric_classes()} | dict.fromkeys(FOLLOW, "one")


def columns_for(metric_names: set[str], notes: bool = True) -> list[str]:
    cols = list(PROVENANCE)
    for m in sorted(metric_names):
        cols += [m, f"{m}_backend"] + ([f"{m}_note"] if notes else [])
    return cols


def _is_metric(column: str) -> bool:
    return column not in PROVENANCE and not column.endswith(METRIC_SUFFIXES)


def _check_header(header: list[str], path: Path) -> set[str]:
    if not header:
        raise LeaderboardError(f"{path}: empty header", hint="restore the file from git or delete it")
    missing = [c for c in PROVENANCE if c not in header]
    if missing:
        raise LeaderboardError(f"{path}: header lacks columns {missing}", hint="restore the file from git")
    known = metric_directions()
    metrics = {c for c in header if _is_metric(c)}
    for m in metrics:
        if m not in known:
            raise LeaderboardError(f"{path}: unknown metric column {m!r}", hint=f"known metrics: {', '.join(known)}")
        if f"{m}_backend" not in header:
            raise LeaderboardError(f"{path}: metric column {m!r} has no {m}_backend column")
    if header not in (columns_for(metrics), columns_for(metrics, notes=False)):  # the second: before notes existed
        raise LeaderboardError(f"{path}: columns are not in the expected order or repeat",
                               hint="restore the file from git")
    return metrics


def _with_added(header: list[str], added: list[str]) -> list[str]:
    """An older header with the later provenance columns inserted where they belong."""
    if not added:
        return header
    n_old = len([c for c in PROVENANCE if c not in added])
    return [c for c in PROVENANCE if c in header[:n_old] or c in added] + header[n_old:]


def _check_row(row: dict[str, str], metrics: set[str], path: Path, line: int) -> None:
    where = f"{path}:{line}"
    for c in ("run_id", "method", "task"):
        if not row.get(c):
            raise LeaderboardError(f"{where}: empty {c}", hint="fix or delete that line")
    if row["task"] not in TASKS:
        raise LeaderboardError(f"{where}: unknown task {row['task']!r}", hint=f"tasks: {', '.join(TASKS)}")
    for c in INT_COLUMNS:
        if not row[c].lstrip("-").isdigit():
            raise LeaderboardError(f"{where}: {c} must be an integer, got {row[c]!r}")
    for c in ["train_seconds", *metrics]:
        if row[c] != "":
            try:
                float(row[c])
            except ValueError:
                raise LeaderboardError(f"{where}: {c} must be a number or empty, got {row[c]!r}") from None


def read_rows(path: str | Path) -> tuple[list[dict[str, str]], set[str]]:
    """Rows and metric names of a leaderboard CSV, validated; a missing file is an empty leaderboard."""
    path = Path(path)
    if not path.is_file():
        return [], set()
    try:
        text = path.read_text(encoding="utf-8")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        added = [c for c in ADDED_PROVENANCE if header and c not in header]
        metrics = _check_header(_with_added(header, added), path)
        defaults = {c: ADDED_PROVENANCE[c] for c in added} | {f"{m}_note": "" for m in metrics}
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise LeaderboardError(f"{path}:{line}: {len(values)} fields, expected {len(header)}",
                                       hint="restore the file from git or fix that line")
            row = defaults | dict(zip(header, values))
            _check_row(row, metrics, path, line)
            rows.append(row)
    except (UnicodeDecodeError, csv.Error) as e:
        raise LeaderboardError(f"{path}: not a readable CSV ({e})", hint="restore the file from git") from None
    return rows, metrics


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    rows, metrics = read_rows(path)
    df = pd.DataFrame(rows, columns=columns_for(metrics))
    for c in ["train_seconds", *metrics]:
        df[c] = pd.to_numeric(df[c].mask(df[c] == ""), errors="raise") if len(df) else df[c].astype(float)
    for c in INT_COLUMNS:
        df[c] = df[c].astype(int)
    return df


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return str(v)


def publish_rows(path: str | Path, rows: list[dict[str, Any]]) -> int:
    """Replace the rows of the run ids in ``rows`` (append if new) under a file lock; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**ADDED_PROVENANCE, **{k: v for k, v in r.items() if not (k in ADDED_PROVENANCE and v in ("", None))}}
            for r in rows]
    new_metrics = {k for r in rows for k in r if _is_metric(k)}
    known = metric_directions()
    for m in new_metrics:
        if m not in known:
            raise LeaderboardError(f"cannot publish unknown metric {m!r}", hint=f"known: {', '.join(known)}")
    run_ids = {str(r["run_id"]) for r in rows}
    with lock(path):
        old, metrics = read_rows(path)
        metrics |= new_metrics
        header = columns_for(metrics)
        kept = [r for r in old if r["run_id"] not in run_ids]
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, header, restval="", lineterminator="\n")
            w.writeheader()
            w.writerows(kept)
            w.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    return len(kept) + len(rows)


def current(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """Rows of the whole protocol (not a ``protocol_subset`` quick run; with ``quick``, only those) of the dataset
    version and protocol version of the newest such row: what the board shows."""
    if "protocol_subset" in df.columns:
        df = df[(df["protocol_subset"].fillna("") != "") == quick]
    elif quick:
        return df.iloc[:0]
    if df.empty:
        return df
    newest = df.sort_values(["date", "run_id"]).iloc[-1]
    return df[(df["dataset_version"] == newest["dataset_version"])
              & (df["protocol_version"] == newest["protocol_version"])]


def metric_note(value: dict[str, Any]) -> str:
    """What qualifies a metric value on the board (a ``MetricValue.to_dict()``): validation, sample size, spread."""
    extra = value.get("extra") or {}
    parts = []
    if extra.get("validation"):
        parts.append(str(extra["validation"]))
    if extra.get("reliable") is False:
        parts.append(f"only {value.get('n', 0)} frames per side (< 2048): unreliable")
    if "std" in extra and value.get("value") is not None:
        parts.append(f"std {extra['std']:.3g} over subsets")
    if extra.get("pairs_unavailable"):
        parts.append(f"{extra['pairs_unavailable']} pairs could not be answered")
    return "; ".join(parts)


def run_rows(run_dir: str | Path, leaderboard_dir: str | Path) -> list[dict[str, Any]]:
    """Leaderboard rows of a finished run (``run.json`` + ``metrics_detail.json``); copies its sample animations."""
    run_dir = Path(run_dir)
    info_path, detail_path = run_dir / "run.json", run_dir / "metrics_detail.json"
    for p in (info_path, detail_path):
        if not p.is_file():
            raise LeaderboardError(f"{p} not found", hint="run `toontalker-bench run` or `evaluate run` first")
    info = json.loads(info_path.read_text())
    detail = json.loads(detail_path.read_text())
    rows = []
    for task, metrics in detail["tasks"].items():
        sample = next((f for f in (run_dir / "samples" / f"{task}{x}" for x in SAMPLE_SUFFIXES) if f.is_file()), None)
        rel = ""
        if sample is not None:
            rel = f"samples/{info['method']}-{info['run_id']}-{task}{sample.suffix}"
            dst = Path(leaderboard_dir) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(sample, tmp)
        row: dict[str, Any] = {k: info.get(k, ADDED_PROVENANCE.get(k, "")) for k in PROVENANCE}
        row.update(task=task, size=detail.get("size", info.get("size", 0)), sample_gif=rel,
                   protocol_version=detail.get("protocol_version", 1), analysis_size=detail.get("analysis_size", 0))
        for m, v in metrics.items():
            row[m] = v.get("value")
            row[f"{m}_backend"] = v.get("backend", "")
            row[f"{m}_note"] = metric_note(v)
        row.update(follow_cells(metrics))
        rows.append(row)
    return rows


def follow_cells(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The :data:`FOLLOW` cells of one task's metric values (``MetricValue.to_dict()`` by name): the ``follow`` of
    each relative motion metric, with that metric's backend and note (its validation holds for the share too)."""
    cells: dict[str, Any] = {}
    for col, m in FOLLOW.items():
        v = metrics.get(m) or {}
        follow = (v.get("extra") or {}).get("follow")
        if follow is not None:
            cells.update({col: follow, f"{col}_backend": v.get("backend", ""), f"{col}_note": metric_note(v)})
    return cells


def prune(leaderboard_dir: str | Path, benchmark: str, keep_dataset_version: str | None) -> tuple[int, int]:
    """Drop the rows measured on any other dataset version (``None``: keep every version; dropped rows stay in git
    history) and keep sample animations only for the newest run of each :data:`SAMPLE_GROUP` among the rows the board
    shows (:func:`current`, whole-protocol and quick runs apart): older runs and rows of older dataset or protocol
    versions keep theirs in their run directories and in git history. Returns ``(rows dropped, samples deleted)``."""
    folder = Path(leaderboard_dir)
    path = folder / f"{benchmark}.csv"
    with lock(path):
        rows, metrics = read_rows(path)
        kept = [r for r in rows if keep_dataset_version is None or r["dataset_version"] == keep_dataset_version]
        table = pd.DataFrame(kept, columns=columns_for(metrics))
        on_board = [kept[i] for quick in (False, True) for i in current(table, quick).index]
        newest: dict[tuple[str, ...], dict[str, str]] = {}
        for r in sorted(on_board, key=lambda r: (r["date"], r["run_id"])):
            newest[tuple(r[k] for k in SAMPLE_GROUP)] = r
        shown = {id(r) for r in newest.values()}
        superseded = [r for r in kept if r["sample_gif"] and id(r) not in shown]
        for r in superseded:
            r["sample_gif"] = ""
        if len(kept) < len(rows) or superseded:
            with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, columns_for(metrics), restval="", lineterminator="\n")
                w.writeheader()
                w.writerows(kept)
        referenced = {folder / r["sample_gif"] for r in kept if r["sample_gif"]}
        samples = [f for x in SAMPLE_SUFFIXES for f in (folder / "samples").glob(f"*{x}")]
        stale = [f for f in samples if f not in referenced] if rows else []
        for f in stale:
            f.unlink()
    return len(rows) - len(kept), len(stale)
