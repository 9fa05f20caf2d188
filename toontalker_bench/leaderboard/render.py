"""Leaderboard pages: ``README.md`` (markdown tables), ``index.html`` (sortable; the ``str.format`` template
``page.html``) and ``plots/<task>.png`` (bar charts), all from the CSV; and the plain-text view ``leaderboard show``.

Rows are summarised per (method, profile, variant, training steps, task) over training seeds: the newest run of each
seed, then the mean and, with two or more seeds, the standard deviation ("mean ± sd, n seeds"), so a ranking shows its
seed-to-seed spread. Only rows of the newest dataset version and protocol version are shown; the others are named
under the heading. Brackets (reference points such as copy-source or oracle-render) are labelled and never bold. A
value whose note says it is not validated on this data carries †, one from too few frames ‡; the notes are listed
under each table. A value is bold only when it means something (:func:`bold_cells`).
"""

from __future__ import annotations

import html
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.domains import TASKS
from ..core.io import atomic_path, write_text
from .store import FOLLOW, SUMMARY_KEY, csv_path, current, lock, metric_directions, read_leaderboard

GROUP = list(SUMMARY_KEY)
#: the board's column groups after the headline motion metrics (``motion``: the headline metrics in declared order,
#: then the :data:`FOLLOW` shares); metrics in none of them follow, by name, under ``other``
GROUPS = {"identity": ("csim",), "image quality": ("l1", "psnr", "ssim", "lpips"), "distribution": ("fid", "kid")}
COPY = "copy-source"  # the bracket a bold value must beat by more than its seed-to-seed sd
VERIFY_TEXT = ("Each run's weights (`checkpoints/`, the row's `checkpoint` column), config and per-pair values "
               "(`pairs/`) are kept beside the CSV: `toontalker-bench leaderboard verify RUN_ID` re-animates and "
               "re-scores a row from them (docs/benchmark.md, \"Re-checking a row\")")


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
                   sample_gif=newest["sample_gif"], checkpoint=newest.get("checkpoint", ""),
                   steps=int(newest["steps"]),
                   train_seconds=float(g["train_seconds"].mean()), n_seeds=len(g))
        for m in metrics:
            vals = g[m].dropna()
            row[m] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{m}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[f"{m}_backend"] = newest[f"{m}_backend"]
            # the seeds' notes part by part: a part they share (KID's "too few frames") once, their own ones each
            row[f"{m}_note"] = "; ".join(dict.fromkeys(p for n in g[f"{m}_note"] if n for p in n.split("; ") if p))
        out.append(row)
    summary = pd.DataFrame(out)
    # a configuration shown at several training budgets names its steps, so its rows can be told apart
    summary["several_budgets"] = summary.groupby(["method", "profile", "variant"])["steps"].transform("nunique") > 1
    return summary


def column_groups(df: pd.DataFrame) -> dict[str, list[str]]:
    """The metric columns ``df`` has a value of, by board group, in board order: ``motion`` (the headline metrics
    in declared order, then the follow shares), then :data:`GROUPS`, then ``other`` by name; empty groups left out."""
    from ..metrics import metric_classes

    present = {m for m in metric_directions() if m in df.columns and df[m].notna().any()}
    headline = [c.name for c in metric_classes() if c.headline and c.name in present]
    motion = headline + [f for f in FOLLOW if f in present]
    groups = {"motion": motion} | {g: [m for m in ms if m in present] for g, ms in GROUPS.items()}
    placed = {m for ms in groups.values() for m in ms}
    groups["other"] = sorted(present - placed)
    return {g: ms for g, ms in groups.items() if ms}


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The metrics ``df`` has a value of, in board order (:func:`column_groups`)."""
    return [m for ms in column_groups(df).values() for m in ms]


def _arrow(direction: str) -> str:
    return {"lower": "↓", "higher": "↑"}.get(direction, "→1")


def _task_table(s: pd.DataFrame, task: str) -> tuple[pd.DataFrame, list[str]]:
    t = s[s["task"] == task].sort_values(["bracket", "method", "profile", "variant", "steps"])
    return t, metric_columns(t)


def bold_cells(t: pd.DataFrame, metrics: list[str]) -> set[tuple[Any, str]]:
    """``(row label, metric)`` of the values set in bold in one task's summary ``t``: the best *method*'s (brackets
    never count) on a ranked metric (not a follow share), carrying no mark (validated on this data, enough frames),
    and better than copy-source's value at the same profile by more than that method's seed-to-seed sd — so never
    with a single seed, nor without a copy-source row to compare with."""
    directions = metric_directions()
    copy = t[t["method"] == COPY].drop_duplicates("profile", keep="last").set_index("profile")
    methods = t[t["bracket"] != "yes"]
    out = set()
    for m in metrics:
        sign = {"lower": 1.0, "higher": -1.0}.get(directions[m])
        vals = methods[m].dropna()
        if sign is None or vals.empty:
            continue
        best = vals.min() if sign > 0 else vals.max()
        for label, r in methods[methods[m] == best].iterrows():
            ref = copy[m].get(r["profile"], float("nan"))
            gain = sign * (ref - best)
            if not _marks(r[f"{m}_note"]) and math.isfinite(r[f"{m}_sd"]) and gain > r[f"{m}_sd"]:
                out.add((label, m))
    return out


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


def _own_part(part: str) -> bool:
    """A note part that belongs to one value (KID's spread over its subsets), not to the metric on this table."""
    return part.startswith("std ")


def _notes(t: pd.DataFrame, metrics: list[str], csv_name: str) -> list[str]:
    """One line per metric and distinct note; a value's own figures (KID's spread) are left to the CSV and to the
    page's hover text, so rows differing only in them share one line."""
    out = []
    for m in metrics:
        notes: dict[str, bool] = {}
        for n in t[f"{m}_note"]:
            parts = [p for p in n.split("; ") if p]
            shared = "; ".join(p for p in parts if not _own_part(p))
            if parts:
                notes[shared] = notes.get(shared, False) or any(map(_own_part, parts))
        for note, own in notes.items():
            spread = f"each value's std over its subsets is in `{csv_name}`" if own else ""
            out.append(f"- `{m}`{_marks(note)}: " + "; ".join(x for x in (note, spread) if x))
    return out


def elsewhere(df: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    """What the CSV holds beyond the board: per other dataset and protocol version, its learned configurations with
    their seeds (and how many bracket rows), then the count of quick-run rows."""
    rest = df.drop(cur.index)
    quick = rest["protocol_subset"].fillna("") != ""
    out = []
    for (version, protocol), g in rest[~quick].groupby(["dataset_version", "protocol_version"], sort=True):
        learned = g[g["bracket"] != "yes"]
        configs = [f"{_short(key)} ({c['seed'].nunique()} seed{'s' if c['seed'].nunique() > 1 else ''})"
                   for key, c in learned.groupby(["method", "profile", "variant", "steps"], sort=True)]
        brackets = g.loc[g["bracket"] == "yes", "method"].nunique()
        out.append(f"dataset `{version}`, protocol version {protocol}: "
                   + (f"learned rows {'; '.join(configs)}" if configs else "no learned rows")
                   + (f"; and {brackets} bracket{'s' if brackets > 1 else ''}" if brackets else ""))
    if quick.any():
        out.append(f"{int(quick.sum())} rows of quick runs (a protocol subset; `leaderboard show --quick`)")
    return out


def _short(key: tuple[Any, ...]) -> str:
    method, profile, variant, steps = key
    return f"{method} {profile}" + (f" [{variant}]" if variant else "") + f", {steps} steps"


#: what a bold value means, on both pages
BOLD_RULE = ("a value is bold only when it means something: it is the best *method*'s (brackets never count), "
             "on a metric validated for this task with enough frames (no † or ‡), and it beats copy-source's value at "
             "the same profile by more than that method's seed-to-seed sd — so with a single seed nothing is bold")
FOLLOW_TEXT = ("`pose_follow` / `exp_follow` (→1) are the share of the driver's head-rotation / expression change "
               "the output carries (1 = all of it, 0 = none, as copy-source), read from `apd_rel_deg` / "
               "`aed_exp_rel`; they explain those distances and are not ranked")


def _versions(df: pd.DataFrame, cur: pd.DataFrame, benchmark: str) -> tuple[str, list[str]]:
    """The line naming the board's dataset and protocol version, and the rows the CSV holds beyond the board."""
    if cur.empty:
        return "", []
    newest = cur.sort_values(["date", "run_id"]).iloc[-1]
    line = (f"Dataset `{newest['dataset_version']}`, protocol version {newest['protocol_version']}, face analysis at "
            f"{newest['analysis_size'] or 'the method'} px.")
    rest = elsewhere(df, cur)
    return line, ([f"Not on this board, kept in `{benchmark}.csv` (`leaderboard prune` drops other dataset "
                   "versions):", *rest] if rest else [])


def render_markdown(df: pd.DataFrame, benchmark: str) -> str:
    directions = metric_directions()
    cur = current(df)
    n_seeds = sorted(set(summarise(cur)["n_seeds"])) if not cur.empty else []
    out = [f"# Leaderboard: {benchmark}", "",
           "Each row is one configuration (method, profile, variant, training steps) on one task: the **mean over "
           f"its training seeds** (`n` = seeds, here {', '.join(map(str, n_seeds)) or 'none'}; the newest run of "
           "each seed) ± the seed-to-seed standard deviation when n ≥ 2. ↓ lower is better, ↑ higher is better. "
           "Columns: motion (`apd_rel_deg` and `aed_exp_rel` — changes since the first frame, what a "
           "relative-motion method must reproduce — are the headline metrics), identity, image quality, "
           f"distribution, other. {FOLLOW_TEXT}. Rows marked (bracket) are reference points (copy-source: no "
           "motion; mean-face: an average face; oracle-driving / oracle-render: the right answer). "
           f"{BOLD_RULE[0].upper()}{BOLD_RULE[1:]}. † not validated on this data, ‡ too few frames to be reliable "
           f"(notes under each table). Backends, dataset version, commit and seed of every number are in "
           f"[`{benchmark}.csv`]({benchmark}.csv); an interactive table with samples is in [index.html](index.html). "
           f"{VERIFY_TEXT}.", ""]
    line, rest = _versions(df, cur, benchmark)
    if line:
        out += [line, ""]
    if rest:
        out += [rest[0], "", *(f"- {x}" for x in rest[1:]), ""]
    s = summarise(cur)
    for task in TASKS:
        if s.empty:
            break
        t, metrics = _task_table(s, task)
        if t.empty:
            continue
        bold = bold_cells(t, metrics)
        out += [f"## {task}", ""]
        head = ["method", "profile", "n", *[f"{m} {_arrow(directions[m])}" for m in metrics], "steps", "train s",
                "newest run"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for r in t.itertuples():
            cells = [f"*{_label(r)}*" if r.bracket == "yes" else _label(r), r.profile, str(r.n_seeds)]
            cells += [f"**{_cell_text(r, m)}**" if (r.Index, m) in bold else _cell_text(r, m) for m in metrics]
            cells += [str(r.steps), _fmt(r.train_seconds), f"`{r.run_id}`"]
            out.append("| " + " | ".join(cells) + " |")
        notes = _notes(t, metrics, f"{benchmark}.csv")
        out += ([""] + notes if notes else []) + ["", f"![{task}](plots/{task}.png)", ""]
    return "\n".join(out) + "\n"


def _plot_label(r: Any) -> str:  # noqa: ANN401 - a summary row
    """A bar's name: method, profile, steps when shown at several budgets, and the variant cut short."""
    variant = r.variant if len(r.variant) <= 24 else r.variant[:23] + "…"
    return (f"{r.method} {r.profile}" + (f" {r.steps} st." if r.several_budgets else "")
            + (f" [{variant}]" if variant else ""))


def _bar_charts(s: pd.DataFrame, folder: Path) -> list[str]:
    """One full-width figure per task: a horizontal bar per row and a panel per metric, four panels a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directions = metric_directions()
    made = []
    for task in TASKS:
        t, metrics = _task_table(s, task)
        if t.empty or not metrics:
            continue
        ncols = min(4, len(metrics))
        nrows = math.ceil(len(metrics) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(16, nrows * (0.32 * len(t) + 1.3) + 0.6), squeeze=False,
                                 sharey=True)
        labels = [_plot_label(r) for r in t.itertuples()]
        colors = ["#999" if b == "yes" else "#3b6ea8" for b in t["bracket"]]
        for ax, m in zip(axes.flat, metrics):
            vals = t[m].astype(float).fillna(0.0)
            err = t[f"{m}_sd"].astype(float)  # NaN (one seed): no error bar
            ax.barh(range(len(vals)), vals, xerr=err, capsize=3, color=colors)
            ax.set_yticks(range(len(vals)), labels, fontsize=11)
            ax.set_title(f"{m} {_arrow(directions[m])}", fontsize=13)
            ax.tick_params(axis="x", labelsize=10)
            ax.grid(axis="x", alpha=0.3)
        for ax in list(axes.flat)[len(metrics):]:
            ax.set_visible(False)
        axes[0, 0].invert_yaxis()  # the table's order, top down (the y axis is shared: invert it once)
        fig.suptitle(f"{task}: mean over seeds (grey: brackets; error bars: seed-to-seed sd)", fontsize=14)
        fig.tight_layout()
        with atomic_path(folder / f"{task}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        made.append(task)
    return made


def _tags(r: Any) -> str:  # noqa: ANN401 - a summary row
    """The small tags after a method's name on the page: profile, variant parts (each cut short, in full on hover),
    steps when shown at several budgets, pose labels, bracket."""
    e = html.escape
    tags = [r.profile, *(p for p in r.variant.split("; ") if p)]
    if r.several_budgets:
        tags.append(f"{r.steps} steps")
    if r.pose_labels:
        tags.append(f"{r.pose_labels} pose labels")
    if r.bracket == "yes":
        tags.append("bracket")
    return "".join(f'<span class="tag" title="{e(x)}">{e(x)}</span>' for x in tags)


def _html_cell(r: Any, m: str, bold: bool) -> str:  # noqa: ANN401 - a summary row
    e = html.escape
    v, sd, note = getattr(r, m), getattr(r, f"{m}_sd"), getattr(r, f"{m}_note")
    num = "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(float(v))
    title = e("; ".join(x for x in (str(getattr(r, f"{m}_backend") or ""), note) if x))
    spread = f"<small>± {sd:.2g}</small>" if isinstance(sd, float) and math.isfinite(sd) else ""
    cls = ' class="best"' if bold else ""
    return f'<td{cls} data-v="{num}" title="{title}">{e(_fmt(v) + _marks(note))}{spread}</td>'


def render_html(df: pd.DataFrame, benchmark: str, plots: list[str]) -> str:
    directions = metric_directions()
    cur = current(df)
    s = summarise(cur)
    parts = []
    e = html.escape
    for task in TASKS:
        if s.empty:
            break
        t, metrics = _task_table(s, task)
        if t.empty:
            continue
        bold = bold_cells(t, metrics)
        groups = column_groups(t)
        top = ['<th class="t" rowspan="2" data-col="method" data-i="0">method</th>',
               '<th rowspan="2" data-col="n_seeds" data-i="1" title="training seeds">n</th>']
        top += [f'<th class="g" colspan="{len(ms)}">{e(g)}</th>' for g, ms in groups.items()]
        i = 2 + len(metrics)
        top += [f'<th rowspan="2" data-col="steps" data-i="{i}">steps</th>',
                f'<th rowspan="2" data-col="train_seconds" data-i="{i + 1}">train s</th>',
                '<th class="t" rowspan="2">sample</th>']
        sub = [f'<th data-col="{e(m)}" data-i="{2 + j}" title="{e(_direction_text(directions[m]))}">'
               f'{e(m).replace("_", "_<wbr>")} {_arrow(directions[m])}</th>' for j, m in enumerate(metrics)]
        body = []
        for r in t.itertuples():
            about = f"{_label(r)}; newest run {r.run_id}"
            cells = [f'<td class="t" data-s="{e(_label(r))}" title="{e(about)}"><span class="name">{e(r.method)}'
                     f"</span> {_tags(r)}</td>", f'<td data-v="{r.n_seeds}">{r.n_seeds}</td>']
            cells += [_html_cell(r, m, (r.Index, m) in bold) for m in metrics]
            cells.append(f'<td data-v="{int(r.steps)}">{int(r.steps)}</td>')
            ts = "" if pd.isna(r.train_seconds) else repr(float(r.train_seconds))
            cells.append(f'<td data-v="{ts}">{_fmt(r.train_seconds)}</td>')
            sample = (f'<a href="{e(r.sample_gif)}"><img class="sample" src="{e(r.sample_gif)}" '
                      f'alt="{e(r.method)} {e(task)} sample"></a>') if r.sample_gif else ""
            if isinstance(r.checkpoint, str) and r.checkpoint:
                sample += (f'<br><a class="weights" href="{e(r.checkpoint)}" title="the run\'s weights; '
                           f'toontalker-bench leaderboard verify {e(r.run_id)}">weights</a>')
            cells.append(f'<td class="t">{sample}</td>')
            bound = ' class="bound"' if r.bracket == "yes" else ""
            body.append(f"<tr{bound}>" + "".join(cells) + "</tr>")
        notes = "".join(f"<li>{_inline(n.removeprefix('- '))}</li>" for n in _notes(t, metrics, f"{benchmark}.csv"))
        plot = f'<p><img class="plot" src="plots/{task}.png" alt="{task} bar chart"></p>' if task in plots else ""
        parts.append(f'<h2>{task}</h2>\n<table id="{task}"><thead><tr>{"".join(top)}</tr><tr>{"".join(sub)}</tr>'
                     "</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
                     + (f"<ul>{notes}</ul>\n" if notes else "") + plot)
    line, rest = _versions(df, cur, benchmark)
    versions = (f"<p>{_inline(line)}</p>" if line else "") + (
        f"<p>{_inline(rest[0])}</p><ul>" + "".join(f"<li>{_inline(x)}</li>" for x in rest[1:]) + "</ul>"
        if rest else "")
    template = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return template.format(title=e(benchmark), csv=e(f"{benchmark}.csv"), follow=_inline(FOLLOW_TEXT),
                           bold=_inline(BOLD_RULE), verify=_inline(VERIFY_TEXT), versions=versions,
                           tables="\n".join(parts) or "<p>No runs published yet.</p>")


def _direction_text(direction: str) -> str:
    return {"lower": "lower is better", "higher": "higher is better"}.get(
        direction, "1 = the output carries all of the driver's change, 0 = none; not ranked")


def _inline(text: str) -> str:
    """Markdown's inline code and emphasis as HTML (the texts both pages share)."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)


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
        t, metrics = _task_table(s, task)
        if t.empty:
            continue
        view = pd.DataFrame({"method": [_label(r) for r in t.itertuples()], "n": t["n_seeds"].to_numpy(),
                             **{f"{m}{_arrow(directions[m])}": [_cell_text(r, m) for r in t.itertuples()]
                                for m in metrics}})
        lines += [f"== {task}", view.to_string(index=False), ""]
    return "\n".join(lines)
