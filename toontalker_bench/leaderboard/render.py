"""Leaderboard pages: ``README.md`` (markdown tables), ``index.html`` (sortable; template ``page.html``) and
``plots/<task>.png`` (bar charts), all from the CSV; and the plain-text view ``leaderboard show`` prints."""

from __future__ import annotations

import html
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ..domains import TASKS
from ..io import atomic_path, write_text
from .store import csv_path, lock, metric_directions, read_leaderboard

UPPER_BOUNDS = ("oracle-driving",)  # shown for scale, never "best"


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
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8").format(title=html.escape(benchmark), csv=html.escape(f"{benchmark}.csv"),
                        tables="\n".join(parts) or "<p>No runs published yet.</p>")


def render(leaderboard_dir: str | Path, benchmark: str) -> tuple[Path, Path]:
    """Write ``README.md``, ``index.html`` and ``plots/<task>.png`` from ``<benchmark>.csv``."""
    folder = Path(leaderboard_dir)
    path = csv_path(folder, benchmark)
    with lock(path):
        df = read_leaderboard(path)
    latest = latest_rows(df)
    plots = _bar_charts(latest, folder / "plots") if not latest.empty else []
    md, page = folder / "README.md", folder / "index.html"
    write_text(md, render_markdown(df, benchmark))
    write_text(page, render_html(df, benchmark, plots))
    return md, page


def show(leaderboard_dir: str | Path, benchmark: str) -> str:
    """A plain-text view of the newest rows per task (what ``leaderboard show`` prints)."""
    directions = metric_directions()
    path = csv_path(leaderboard_dir, benchmark)
    df = latest_rows(read_leaderboard(path))
    if df.empty:
        return f"no runs published to {path} yet"
    lines = []
    for task in TASKS:
        t, metrics, _ = _task_table(df, task, directions)
        if t.empty:
            continue
        t = t.assign(method=[_method_label(m, p) for m, p in zip(t["method"], t["pose_labels"])])
        view = t[["method", "profile", *metrics]].rename(columns={m: f"{m}{_arrow(directions[m])}" for m in metrics})
        lines += [f"== {task}", view.to_string(index=False, float_format=lambda x: f"{x:.4g}"), ""]
    return "\n".join(lines)
