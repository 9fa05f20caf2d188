"""Leaderboard: one CSV row per (run, task) with full provenance, atomic concurrent appends, rendered pages.

``leaderboard/<benchmark>.csv`` columns: the provenance columns below, then ``<metric>`` and ``<metric>_backend`` for
every metric any published run reported (metric names are those of ``toontalker_bench.metrics.METRICS``). Publishing
takes a file lock, reads and validates the whole file, drops the rows of the run id being published (re-publishing
replaces them), adds the new rows and replaces the file atomically — a corrupt file is reported and left untouched.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import html
import io
import json
import logging
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from filelock import FileLock

from .domains import TASKS
from .errors import LeaderboardError
from .io import atomic_path, write_text

log = logging.getLogger(__name__)

PROVENANCE = ("run_id", "method", "profile", "task", "dataset_version", "code_commit", "seed", "steps",
              "train_seconds", "device", "date", "size", "sample_gif", "pose_labels")
#: provenance columns added after files were first written: an older file without them reads as empty cells and
#: gains the column at its next publish
ADDED_PROVENANCE = ("pose_labels",)
INT_COLUMNS = ("seed", "steps", "size")
LOCK_TIMEOUT_S = 300.0
UPPER_BOUNDS = ("oracle-driving",)  # shown for scale, never "best"


# ------------------------------------------------------------------------------------------------ provenance
def dataset_version(dataset_dir: str | Path, lock_file: str | Path = "dvc.lock") -> str:
    """The DVC md5 of the dataset directory from ``dvc.lock``, else a content hash of its tables."""
    dataset_dir = Path(dataset_dir)
    lock = Path(lock_file)
    if lock.is_file():
        try:
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        except yaml.YAMLError:
            stages = {}
        root = dataset_dir.as_posix().rstrip("/")
        found = sorted((str(out["path"]).rstrip("/"), str(out["md5"]))
                       for stage in stages.values() if isinstance(stage, dict)
                       for out in stage.get("outs", []) if out.get("md5")
                       and (str(out.get("path", "")).rstrip("/") + "/").startswith(root + "/"))
        if len(found) == 1 and found[0][0] == root:
            return f"dvc:{found[0][1]}"
        if found:  # the dataset is several DVC outputs: hash their md5s
            return "dvc:" + hashlib.sha256(json.dumps(found).encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for rel in ("clips.parquet", "protocol/pairs.parquet"):
        p = dataset_dir / rel
        h.update(p.read_bytes() if p.is_file() else b"-")
    return f"sha256:{h.hexdigest()[:16]}"


def code_commit() -> str:
    here = Path(__file__).resolve().parent  # the checkout this code runs from, whatever the working directory
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True, cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=30, cwd=here).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# ------------------------------------------------------------------------------------------------ schema
def metric_directions() -> dict[str, str]:
    from .metrics import METRICS

    return {e.name: e.meta.get("direction", "lower") for e in METRICS}


def columns_for(metric_names: set[str]) -> list[str]:
    cols = list(PROVENANCE)
    for m in sorted(metric_names):
        cols += [m, f"{m}_backend"]
    return cols


def _check_header(header: list[str], path: Path) -> set[str]:
    if not header:
        raise LeaderboardError(f"{path}: empty header", hint="restore the file from git or delete it")
    missing = [c for c in PROVENANCE if c not in header]
    if missing:
        raise LeaderboardError(f"{path}: header lacks columns {missing}", hint="restore the file from git")
    known = metric_directions()
    metrics = {c for c in header if c not in PROVENANCE and not c.endswith("_backend")}
    for m in metrics:
        if m not in known:
            raise LeaderboardError(f"{path}: unknown metric column {m!r}", hint=f"known metrics: {', '.join(known)}")
        if f"{m}_backend" not in header:
            raise LeaderboardError(f"{path}: metric column {m!r} has no {m}_backend column")
    if header != columns_for(metrics):
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
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise LeaderboardError(f"{path}:{line}: {len(values)} fields, expected {len(header)}",
                                       hint="restore the file from git or fix that line")
            row = dict(zip(header, values)) | dict.fromkeys(added, "")
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


# ------------------------------------------------------------------------------------------------ publishing
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
    new_metrics = {k for r in rows for k in r if k not in PROVENANCE and not k.endswith("_backend")}
    known = metric_directions()
    for m in new_metrics:
        if m not in known:
            raise LeaderboardError(f"cannot publish unknown metric {m!r}", hint=f"known: {', '.join(known)}")
    run_ids = {str(r["run_id"]) for r in rows}
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
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


def run_rows(run_dir: str | Path, leaderboard_dir: str | Path) -> list[dict[str, Any]]:
    """Leaderboard rows of a finished run (``run.json`` + ``metrics_detail.json``); copies its sample GIFs."""
    run_dir = Path(run_dir)
    info_path, detail_path = run_dir / "run.json", run_dir / "metrics_detail.json"
    for p in (info_path, detail_path):
        if not p.is_file():
            raise LeaderboardError(f"{p} not found", hint="run `toontalker-bench run` or `evaluate run` first")
    info = json.loads(info_path.read_text())
    detail = json.loads(detail_path.read_text())
    rows = []
    for task, metrics in detail["tasks"].items():
        gif = run_dir / "samples" / f"{task}.gif"
        rel = ""
        if gif.is_file():
            rel = f"samples/{info['method']}-{info['run_id']}-{task}.gif"
            dst = Path(leaderboard_dir) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(gif, tmp)
        row: dict[str, Any] = {k: info.get(k, "") for k in PROVENANCE}
        row.update(task=task, size=detail.get("size", info.get("size", 0)), sample_gif=rel)
        for m, v in metrics.items():
            row[m] = v.get("value")
            row[f"{m}_backend"] = v.get("backend", "")
        rows.append(row)
    return rows


def publish_run(run_dir: str | Path, leaderboard_dir: str | Path, benchmark: str, render_pages: bool = True) -> Path:
    path = Path(leaderboard_dir) / f"{benchmark}.csv"
    n = publish_rows(path, run_rows(run_dir, leaderboard_dir))
    log.info("published %s to %s (%d rows)", run_dir, path, n)
    if render_pages:
        render(leaderboard_dir, benchmark)
    return path


def prune(leaderboard_dir: str | Path, benchmark: str, keep_dataset_version: str) -> tuple[int, int]:
    """Drop the rows measured on any other dataset version (they stay in git history) and the sample GIFs no row
    references any more; returns ``(rows dropped, GIFs deleted)``. Re-render afterwards."""
    folder = Path(leaderboard_dir)
    path = folder / f"{benchmark}.csv"
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        rows, metrics = read_rows(path)
        kept = [r for r in rows if r["dataset_version"] == keep_dataset_version]
        if len(kept) < len(rows):
            with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, columns_for(metrics), restval="", lineterminator="\n")
                w.writeheader()
                w.writerows(kept)
        referenced = {folder / r["sample_gif"] for r in kept if r["sample_gif"]}
        stale = [g for g in (folder / "samples").glob("*.gif") if g not in referenced] if rows else []
        for gif in stale:
            gif.unlink()
    return len(rows) - len(kept), len(stale)


# ------------------------------------------------------------------------------------------------ rendering
def latest_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The newest run per (method, profile, task)."""
    if df.empty:
        return df
    return (df.sort_values(["date", "run_id"]).groupby(["method", "profile", "task"], sort=False).tail(1)
            .reset_index(drop=True))


def _arrow(direction: str) -> str:
    return "↓" if direction == "lower" else "↑"


def _task_table(df: pd.DataFrame, task: str, directions: dict[str, str]) -> tuple[pd.DataFrame, list[str], dict]:
    t = df[df["task"] == task].sort_values(["method", "profile"])
    metrics = [m for m in sorted(directions) if m in t.columns and t[m].notna().any()]
    best: dict[str, float] = {}
    contenders = t[~t["method"].isin(UPPER_BOUNDS)]
    for m in metrics:
        vals = contenders[m].dropna()
        if len(vals):
            best[m] = vals.min() if directions[m] == "lower" else vals.max()
    return t, metrics, best


def _method_label(method: str, pose_labels: str) -> str:
    """The method name, plus where its training pose vectors came from for methods trained on them."""
    return f"{method} ({pose_labels} pose labels)" if pose_labels else method


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4g}"


def render_markdown(df: pd.DataFrame, benchmark: str) -> str:
    directions = metric_directions()
    out = [f"# Leaderboard: {benchmark}", "",
           "Newest run per method and profile. ↓ lower is better, ↑ higher is better; the best value is bold "
           f"({', '.join(UPPER_BOUNDS)} is an upper bound shown for scale and never counts as best). "
           "Backends, dataset version, commit and seed of every number are in "
           f"[`{benchmark}.csv`]({benchmark}.csv); an interactive table is in [index.html](index.html).", ""]
    latest = latest_rows(df)
    for task in TASKS:
        t, metrics, best = _task_table(latest, task, directions)
        if t.empty:
            continue
        out += [f"## {task}", ""]
        head = ["method", "profile", *[f"{m} {_arrow(directions[m])}" for m in metrics], "steps", "train s", "run"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for r in t.itertuples():
            label = _method_label(r.method, r.pose_labels)
            cells = [f"*{label}*" if r.method in UPPER_BOUNDS else label, r.profile]
            for m in metrics:
                v = getattr(r, m)
                s = _fmt(v)
                cells.append(f"**{s}**" if m in best and v == best[m] else s)
            cells += [str(r.steps), _fmt(r.train_seconds), f"`{r.run_id}`"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out.append(f"![{task}](plots/{task}.png)")
        out.append("")
    return "\n".join(out) + "\n"


def _bar_charts(df: pd.DataFrame, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directions = metric_directions()
    made = []
    for task in TASKS:
        t, metrics, _ = _task_table(df, task, directions)
        if t.empty or not metrics:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 0.6, 2.8), squeeze=False)
        labels = [f"{m}\n{p}" for m, p in zip(t["method"], t["profile"])]
        for ax, m in zip(axes[0], metrics):
            vals = t[m].astype(float).fillna(0.0)
            ax.bar(range(len(vals)), vals, color=["#999" if x in UPPER_BOUNDS else "#3b6ea8" for x in t["method"]])
            ax.set_xticks(range(len(vals)), labels, rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{m} {_arrow(directions[m])}", fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        fig.suptitle(task, fontsize=10)
        fig.tight_layout()
        with atomic_path(folder / f"{task}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        made.append(task)
    return made


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>toontalker-bench leaderboard: {title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td.t,th.t{{text-align:left}}
th{{cursor:pointer;background:#f3f3f3;user-select:none}} th[aria-sort=ascending]::after{{content:" ▲"}}
th[aria-sort=descending]::after{{content:" ▼"}} td.best{{font-weight:bold}} tr.bound td{{color:#777}}
img.gif{{height:48px}} img.plot{{max-width:100%}}
</style></head><body>
<h1>Leaderboard: {title}</h1>
<p>Newest run per method and profile. ↓ lower is better, ↑ higher is better; bold = best (upper-bound
baselines excluded). Click a column header to sort. Raw data with full provenance: <a href="{csv}">{csv}</a>.</p>
{tables}
<script>
function sortTable(th) {{
  const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
  const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
  for (const h of table.tHead.rows[0].cells) h.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", dir);
  const key = (row) => {{
    const v = row.cells[col].dataset.v;
    return v === undefined ? row.cells[col].textContent : (v === "" ? NaN : parseFloat(v));
  }};
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {{
    const x = key(a), y = key(b);
    if (typeof x === "number" || typeof y === "number") {{
      if (Number.isNaN(x)) return 1;
      if (Number.isNaN(y)) return -1;
      return dir === "ascending" ? x - y : y - x;
    }}
    return dir === "ascending" ? String(x).localeCompare(y) : String(y).localeCompare(x);
  }});
  for (const r of rows) body.appendChild(r);
}}
for (const th of document.querySelectorAll("th[data-col]")) th.addEventListener("click", () => sortTable(th));
</script>
</body></html>
"""


def render_html(df: pd.DataFrame, benchmark: str, plots: list[str]) -> str:
    directions = metric_directions()
    latest = latest_rows(df)
    parts = []
    for task in TASKS:
        t, metrics, best = _task_table(latest, task, directions)
        if t.empty:
            continue
        e = html.escape
        head = ['<th class="t" data-col="method">method</th>', '<th class="t" data-col="profile">profile</th>']
        head += [f'<th data-col="{e(m)}" title="{e(directions[m])} is better">{e(m)} {_arrow(directions[m])}</th>'
                 for m in metrics]
        head += ['<th data-col="steps">steps</th>', '<th data-col="train_seconds">train s</th>',
                 '<th class="t" data-col="run_id">run</th>', '<th class="t">sample</th>']
        body = []
        for r in t.itertuples():
            cells = [f'<td class="t">{e(_method_label(r.method, r.pose_labels))}</td>',
                     f'<td class="t">{e(r.profile)}</td>']
            for m in metrics:
                v = getattr(r, m)
                num = "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(float(v))
                backend = e(str(getattr(r, f"{m}_backend") or ""))
                cls = ' class="best"' if m in best and v == best[m] else ""
                cells.append(f'<td{cls} data-v="{num}" title="{backend}">{_fmt(v)}</td>')
            cells.append(f'<td data-v="{int(r.steps)}">{int(r.steps)}</td>')
            ts = "" if pd.isna(r.train_seconds) else repr(float(r.train_seconds))
            cells.append(f'<td data-v="{ts}">{_fmt(r.train_seconds)}</td>')
            cells.append(f'<td class="t"><code>{e(r.run_id)}</code></td>')
            gif = f'<img class="gif" src="{e(r.sample_gif)}" alt="{e(r.method)} {e(task)}">' if r.sample_gif else ""
            cells.append(f'<td class="t">{gif}</td>')
            bound = ' class="bound"' if r.method in UPPER_BOUNDS else ""
            body.append(f"<tr{bound}>" + "".join(cells) + "</tr>")
        plot = f'<p><img class="plot" src="plots/{task}.png" alt="{task} bar chart"></p>' if task in plots else ""
        parts.append(f'<h2>{task}</h2>\n<table id="{task}"><thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n'
                     + "\n".join(body) + f"\n</tbody></table>\n{plot}")
    return _PAGE.format(title=html.escape(benchmark), csv=html.escape(f"{benchmark}.csv"),
                        tables="\n".join(parts) or "<p>No runs published yet.</p>")


def render(leaderboard_dir: str | Path, benchmark: str) -> tuple[Path, Path]:
    """Write ``README.md``, ``index.html`` and ``plots/<task>.png`` from ``<benchmark>.csv``."""
    folder = Path(leaderboard_dir)
    csv_path = folder / f"{benchmark}.csv"
    with FileLock(str(csv_path) + ".lock", timeout=LOCK_TIMEOUT_S):
        df = read_leaderboard(csv_path)
    latest = latest_rows(df)
    plots = _bar_charts(latest, folder / "plots") if not latest.empty else []
    md, page = folder / "README.md", folder / "index.html"
    write_text(md, render_markdown(df, benchmark))
    write_text(page, render_html(df, benchmark, plots))
    return md, page


def show(leaderboard_dir: str | Path, benchmark: str) -> str:
    """A plain-text view of the newest rows per task (what ``leaderboard show`` prints)."""
    directions = metric_directions()
    df = latest_rows(read_leaderboard(Path(leaderboard_dir) / f"{benchmark}.csv"))
    if df.empty:
        return f"no runs published to {Path(leaderboard_dir) / f'{benchmark}.csv'} yet"
    lines = []
    for task in TASKS:
        t, metrics, _ = _task_table(df, task, directions)
        if t.empty:
            continue
        t = t.assign(method=[_method_label(m, p) for m, p in zip(t["method"], t["pose_labels"])])
        view = t[["method", "profile", *metrics]].rename(columns={m: f"{m}{_arrow(directions[m])}" for m in metrics})
        lines += [f"== {task}", view.to_string(index=False, float_format=lambda x: f"{x:.4g}"), ""]
    return "\n".join(lines)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
