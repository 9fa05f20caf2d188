"""Leaderboard pages: ``README.md`` (markdown tables), ``index.html`` (sortable; the ``str.format`` template
``page.html``) and ``plots/<task>.png`` (bar charts), all from the CSV; and the plain-text view ``leaderboard show``.

Rows are summarised per (method, profile, variant, training steps, task) over training seeds: the newest run of each
seed, then the mean and, with two or more seeds, the standard deviation ("mean ± sd, n seeds"), so a ranking shows its
seed-to-seed spread. Only rows of the newest dataset version and protocol version are shown. Brackets (reference
points such as copy-source or oracle-render) are labelled and never marked best. A value whose note says it is not
validated on this data carries †, one from too few frames ‡; the notes are listed under each table.
"""

from __future__ import annotations

import html
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.domains import TASKS
from ..core.io import atomic_path, write_text
from .store import SUMMARY_KEY, csv_path, lock, metric_directions, read_leaderboard

GROUP = list(SUMMARY_KEY)


def current(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """Rows of the whole protocol (not a ``protocol_subset`` quick run; with ``quick``, only those) of the dataset
    version and protocol version of the newest such row."""
    if "protocol_subset" in df.columns:
        df = df[(df["protocol_subset"].fillna("") != "") == quick]
    elif quick:
        return df.iloc[:0]
    if df.empty:
        return df
    newest = df.sort_values(["date", "run_id"]).iloc[-1]
    return df[(df["dataset_version"] == newest["dataset_version"])
              & (df["protocol_version"] == newest["protocol_version"])]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, profile, variant, steps, task): metric means over seeds (newest run per seed), ``<m>_sd``,
    ``n_seeds``, the notes of those runs, and the newest run's id, sample and training record."""
    if df.empty:
        return df
    metrics = metric_columns(df)
    per_seed = df.sort_values(["date", "run_id"]).groupby([*GROUP, "seed"], sort=False).tail(1)
    out = []
    for key, g in per_seed.groupby(GROUP, sort=True):
        newest = g.iloc[-1]
        row: dict[str, Any] = dict(zip(GROUP, key))
        row.update(bracket=newest["bracket"], pose_labels=newest["pose_labels"], run_id=newest["run_id"],
                   sample_gif=newest["sample_gif"], steps=int(newest["steps"]),
                   train_seconds=float(g["train_seconds"].mean()), n_seeds=len(g))
        for m in metrics:
            vals = g[m].dropna()
            row[m] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{m}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[f"{m}_backend"] = newest[f"{m}_backend"]
            row[f"{m}_note"] = "; ".join(dict.fromkeys(n for n in g[f"{m}_note"] if n))
        out.append(row)
    summary = pd.DataFrame(out)
    # a configuration shown at several training budgets names its steps, so its rows can be told apart
    summary["several_budgets"] = summary.groupby(["method", "profile", "variant"])["steps"].transform("nunique") > 1
    return summary


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The metrics ``df`` has a value of: the headline ones (relative motion) first, in their declared order, then
    the others by name."""
    from ..metrics import metric_classes

    present = [c for c in metric_classes() if c.name in df.columns and df[c.name].notna().any()]
    return [c.name for c in present if c.headline] + sorted(c.name for c in present if not c.headline)


def _arrow(direction: str) -> str:
    return "↓" if direction == "lower" else "↑"


def _task_table(s: pd.DataFrame, task: str) -> tuple[pd.DataFrame, list[str], dict[str, float]]:
    directions = metric_directions()
    t = s[s["task"] == task].sort_values(["bracket", "method", "profile", "variant", "steps"])
    metrics = [m for m in metric_columns(t)]
    best: dict[str, float] = {}
    contenders = t[t["bracket"] != "yes"]
    for m in metrics:
        vals = contenders[m].dropna()
        if len(vals):
            best[m] = vals.min() if directions[m] == "lower" else vals.max()
    return t, metrics, best


def _label(r: Any) -> str:  # noqa: ANN401 - a summary row
    """Method name, its variant, its training steps when the board shows it at several budgets, where its training
    pose vectors came from, and whether it is a bracket."""
    name = r.method + (f" [{r.variant}]" if r.variant else "")
    if r.several_budgets:
        name += f" ({r.steps} steps)"
    if r.pose_labels:
        name += f" ({r.pose_labels} pose labels)"
    return f"{name} (bracket)" if r.bracket == "yes" else name


def _fmt(v: Any) -> str:  # noqa: ANN401
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4g}"


def _marks(note: str) -> str:
    return ("†" if "not validated" in note else "") + ("‡" if "unreliable" in note else "")


def _cell_text(r: Any, m: str) -> str:  # noqa: ANN401
    v, sd = getattr(r, m), getattr(r, f"{m}_sd")
    text = _fmt(v) + (f" ± {sd:.2g}" if isinstance(sd, float) and math.isfinite(sd) else "")
    return text + _marks(getattr(r, f"{m}_note"))


def _notes(t: pd.DataFrame, metrics: list[str]) -> list[str]:
    out = []
    for m in metrics:
        for note in dict.fromkeys(n for n in t[f"{m}_note"] if n):
            out.append(f"- `{m}`{_marks(note)}: {note}")
    return out


def render_markdown(df: pd.DataFrame, benchmark: str) -> str:
    directions = metric_directions()
    cur = current(df)
    hidden = len(df) - len(cur)
    out = [f"# Leaderboard: {benchmark}", "",
           "Mean over training seeds (newest run per seed) ± the seed-to-seed standard deviation when there are two or "
           "more; `n` = seeds. ↓ lower is better, ↑ higher is better; the best method's value is bold. Rows marked "
           "(bracket) are reference points (copy-source: no motion; mean-face: an average face; oracle-driving / "
           "oracle-render: the right answer) and never count as best. `apd_rel_deg` and `aed_exp_rel` — changes "
           "since the first frame, what a relative-motion method must reproduce — are the headline motion metrics. "
           "† not validated on this data, ‡ too few frames to be reliable (notes under each table). Backends, "
           f"dataset version, commit and seed of every number are in [`{benchmark}.csv`]({benchmark}.csv); an "
           "interactive table is in [index.html](index.html).", ""]
    if not cur.empty:
        newest = cur.sort_values(["date", "run_id"]).iloc[-1]
        out += [f"Dataset `{newest['dataset_version']}`, protocol version {newest['protocol_version']}, face analysis "
                f"at {newest['analysis_size'] or 'the method'} px"
                + (f"; {hidden} rows of other versions or of protocol subsets (quick runs with eval.max_pairs / "
                   "eval.max_frames) are not shown (`leaderboard prune` drops other versions)." if hidden else "."), ""]
    s = summarise(cur)
    for task in TASKS:
        if s.empty:
            break
        t, metrics, best = _task_table(s, task)
        if t.empty:
            continue
        out += [f"## {task}", ""]
        head = ["method", "profile", "n", *[f"{m} {_arrow(directions[m])}" for m in metrics], "steps", "train s",
                "newest run"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for r in t.itertuples():
            cells = [f"*{_label(r)}*" if r.bracket == "yes" else _label(r), r.profile, str(r.n_seeds)]
            for m in metrics:
                text = _cell_text(r, m)
                cells.append(f"**{text}**" if m in best and getattr(r, m) == best[m] else text)
            cells += [str(r.steps), _fmt(r.train_seconds), f"`{r.run_id}`"]
            out.append("| " + " | ".join(cells) + " |")
        notes = _notes(t, metrics)
        out += ([""] + notes if notes else []) + ["", f"![{task}](plots/{task}.png)", ""]
    return "\n".join(out) + "\n"


def _bar_charts(s: pd.DataFrame, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directions = metric_directions()
    made = []
    for task in TASKS:
        t, metrics, _ = _task_table(s, task)
        if t.empty or not metrics:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 0.6, 3.0), squeeze=False)
        labels = [f"{m} {p}" + (f" {n} st." if n else "") for m, p, n in zip(t["method"], t["profile"], t["steps"])]
        for ax, m in zip(axes[0], metrics):
            vals = t[m].astype(float).fillna(0.0)
            err = t[f"{m}_sd"].astype(float).fillna(0.0)
            ax.bar(range(len(vals)), vals, yerr=err, capsize=2,
                   color=["#999" if b == "yes" else "#3b6ea8" for b in t["bracket"]])
            ax.set_xticks(range(len(vals)), labels, rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{m} {_arrow(directions[m])}", fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        fig.suptitle(f"{task} (grey: brackets; error bars: seed-to-seed sd)", fontsize=10)
        fig.tight_layout()
        with atomic_path(folder / f"{task}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        made.append(task)
    return made


def render_html(df: pd.DataFrame, benchmark: str, plots: list[str]) -> str:
    directions = metric_directions()
    s = summarise(current(df))
    parts = []
    e = html.escape
    for task in TASKS:
        if s.empty:
            break
        t, metrics, best = _task_table(s, task)
        if t.empty:
            continue
        head = ['<th class="t" data-col="method">method</th>', '<th class="t" data-col="profile">profile</th>',
                '<th data-col="n_seeds">n</th>']
        head += [f'<th data-col="{e(m)}" title="{e(directions[m])} is better">{e(m)} {_arrow(directions[m])}</th>'
                 for m in metrics]
        head += ['<th data-col="steps">steps</th>', '<th data-col="train_seconds">train s</th>',
                 '<th class="t" data-col="run_id">newest run</th>', '<th class="t">sample</th>']
        body = []
        for r in t.itertuples():
            cells = [f'<td class="t">{e(_label(r))}</td>', f'<td class="t">{e(r.profile)}</td>',
                     f'<td data-v="{r.n_seeds}">{r.n_seeds}</td>']
            for m in metrics:
                v = getattr(r, m)
                num = "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(float(v))
                title = e("; ".join(x for x in (str(getattr(r, f"{m}_backend") or ""), getattr(r, f"{m}_note")) if x))
                cls = ' class="best"' if m in best and v == best[m] else ""
                cells.append(f'<td{cls} data-v="{num}" title="{title}">{e(_cell_text(r, m))}</td>')
            cells.append(f'<td data-v="{int(r.steps)}">{int(r.steps)}</td>')
            ts = "" if pd.isna(r.train_seconds) else repr(float(r.train_seconds))
            cells.append(f'<td data-v="{ts}">{_fmt(r.train_seconds)}</td>')
            cells.append(f'<td class="t"><code>{e(r.run_id)}</code></td>')
            gif = f'<img class="gif" src="{e(r.sample_gif)}" alt="{e(r.method)} {e(task)}">' if r.sample_gif else ""
            cells.append(f'<td class="t">{gif}</td>')
            bound = ' class="bound"' if r.bracket == "yes" else ""
            body.append(f"<tr{bound}>" + "".join(cells) + "</tr>")
        notes = "".join(f"<li>{e(n.removeprefix('- '))}</li>" for n in _notes(t, metrics))
        plot = f'<p><img class="plot" src="plots/{task}.png" alt="{task} bar chart"></p>' if task in plots else ""
        parts.append(f'<h2>{task}</h2>\n<table id="{task}"><thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n'
                     + "\n".join(body) + "\n</tbody></table>\n" + (f"<ul>{notes}</ul>\n" if notes else "") + plot)
    template = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return template.format(title=e(benchmark), csv=e(f"{benchmark}.csv"),
                           tables="\n".join(parts) or "<p>No runs published yet.</p>")


def render(leaderboard_dir: str | Path, benchmark: str) -> tuple[Path, Path]:
    """Write ``README.md``, ``index.html`` and ``plots/<task>.png`` from ``<benchmark>.csv``."""
    folder = Path(leaderboard_dir)
    path = csv_path(folder, benchmark)
    with lock(path):
        df = read_leaderboard(path)
    s = summarise(current(df))
    plots = _bar_charts(s, folder / "plots") if not s.empty else []
    md, page = folder / "README.md", folder / "index.html"
    write_text(md, render_markdown(df, benchmark))
    write_text(page, render_html(df, benchmark, plots))
    return md, page


def show(leaderboard_dir: str | Path, benchmark: str, quick: bool = False) -> str:
    """A plain-text view of the current rows per task, summarised over seeds (what ``leaderboard show`` prints);
    ``quick``: the quick runs' rows instead (a subset of the protocol, e.g. ``make demo``'s)."""
    directions = metric_directions()
    path = csv_path(leaderboard_dir, benchmark)
    s = summarise(current(read_leaderboard(path), quick))
    if s.empty:
        return f"no {'quick' if quick else 'whole-protocol'} runs published to {path} yet"
    lines = []
    for task in TASKS:
        t, metrics, _ = _task_table(s, task)
        if t.empty:
            continue
        view = pd.DataFrame({"method": [_label(r) for r in t.itertuples()], "n": t["n_seeds"].to_numpy(),
                             **{f"{m}{_arrow(directions[m])}": [_cell_text(r, m) for r in t.itertuples()]
                                for m in metrics}})
        lines += [f"== {task}", view.to_string(index=False), ""]
    return "\n".join(lines)
