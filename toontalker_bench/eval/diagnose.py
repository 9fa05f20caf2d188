"""Where a reenactment method's error comes from: re-drawing the source (appearance) or following the driver (motion).

For each self-reenactment protocol pair the driving window itself supplies the source: ``source = d_0`` and the method
animates it with ``d_0 .. d_T`` (relative motion, so the reference frame is the source). Then, per frame, the ground
truth is known exactly and the error splits in two:

- ``appearance_l1`` = L1(out_0, d_0): the error with zero motion to apply; copy-source scores 0.
- ``reenact_l1`` = mean over t >= 1 of L1(out_t, d_t), against ``copy_l1`` = mean L1(d_0, d_t), what copying scores.
- ``follow`` = sum((out_t - out_0) . (d_t - d_0)) / sum(|d_t - d_0|^2): the share of the driver's frame-to-frame
  change that the output reproduces, projected on it (1 = follows exactly, 0 = static or unrelated change).
- ``response`` = mean|out_t - out_0| / mean|d_t - d_0|: how much the output changes at all, relative to the driver.

A method that beats copy-source on ``reenact_l1`` must follow (``follow`` > 0) while drawing the source well
(``appearance_l1`` small): the figures say which of the two is missing. Pixels in [0, 1] at the method's size.

Methods with named internal stages (:meth:`Method.motion_trace`) add ``trace_<stage>`` columns: how much each stage
changes between driving by the source and driving by ``d_1 .. d_T``, so a motion that never reaches the output can be
followed to the stage that drops it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.domains import SELF_TASKS, TASKS
from ..data.dataset import clip_table, load_pairs
from ..models.base import Method
from .evaluator import ProtocolFrames, animate_pairs

COLUMNS = ("appearance_l1", "reenact_l1", "copy_l1", "follow", "response")


def pair_figures(out: torch.Tensor, driving: torch.Tensor) -> dict[str, float]:
    """The module's figures for one animated window: ``out`` and ``driving`` ``(T, 3, S, S)`` in [0, 1], where
    ``out`` animates ``driving[0]`` with ``driving``."""
    d_change = driving[1:] - driving[:1]
    o_change = out[1:] - out[:1]
    energy = float(d_change.pow(2).sum())
    return {
        "appearance_l1": float((out[0] - driving[0]).abs().mean()),
        "reenact_l1": float((out[1:] - driving[1:]).abs().mean()),
        "copy_l1": float(d_change.abs().mean()),
        "follow": float((o_change * d_change).sum()) / energy if energy > 0 else float("nan"),
        "response": float(o_change.abs().mean() / d_change.abs().mean()) if energy > 0 else float("nan"),
    }


@torch.no_grad()
def diagnose(method: Method, dataset_dir: str | Path, splits: tuple[str, ...] = ("test", "train"),
             max_pairs: int = 8, max_frames: int = 32, device: torch.device = torch.device("cpu")) -> pd.DataFrame:
    """Per-pair figures (see the module docstring) on the self-reenactment pairs of ``splits``; one row per pair
    with ``split``, ``task`` and ``pair_id``. A bracket that cannot draw a pair (``oracle-render`` on a clip its
    renderer did not make) leaves NaN figures and the reason in ``unavailable``."""
    root = Path(dataset_dir)
    frames = ProtocolFrames(root, clip_table(root), method.size)
    method.to(device).eval()
    rows: list[dict[str, Any]] = []
    tasks = list(SELF_TASKS)
    for split in splits:
        pairs = load_pairs(root, tasks, split)
        for task in tasks:
            domain = TASKS[task][0]
            tp = pairs[pairs["task"] == task].head(max_pairs) if max_pairs else pairs[pairs["task"] == task]
            for p in animate_pairs(method, frames, tp, (domain, domain), device, max_frames=max_frames,
                                   self_driven=True, desc=f"diagnose {method.name} {split} {task}"):
                info = {"split": split, "task": task, "pair_id": p.row.pair_id}
                if p.output is None:
                    rows.append({**info, **dict.fromkeys(COLUMNS, float("nan")), "unavailable": p.unavailable})
                    continue
                trace = {f"trace_{k}": v for k, v in method.motion_trace(p.source_t, p.driving_t[1:], domain).items()}
                rows.append({**info, **pair_figures(p.output.float().clamp(0, 1).cpu(), p.driving_t.cpu()), **trace,
                             "unavailable": ""})
    return pd.DataFrame(rows)


def figure_columns(table: pd.DataFrame) -> list[str]:
    """:data:`COLUMNS` and the method's ``trace_*`` columns, if any."""
    return [*COLUMNS, *(c for c in table.columns if c.startswith("trace_"))]


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each figure per (split, task) over the pairs the method answered, and their number (``pairs``)."""
    groups = table.groupby(["split", "task"], sort=False)
    return groups[figure_columns(table)].mean().join(groups["appearance_l1"].count().rename("pairs")).reset_index()


def _cell(v: float, column: str) -> str:
    if np.isnan(v):
        return "n/a"
    if column.startswith("trace_"):  # ratios that span orders of magnitude
        return f"{v:.2g}"
    return f"{v:.4f}".replace("-0.0000", "0.0000")  # a rounding sign says nothing


def markdown(summary: pd.DataFrame, title: str) -> str:
    columns = figure_columns(summary)
    head = "| split | task | pairs | " + " | ".join(columns) + " |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (len(columns) + 3)]
    for r in summary.to_dict("records"):
        lines.append(f"| {r['split']} | {r['task']} | {r['pairs']} | "
                     + " | ".join(_cell(r[c], c) for c in columns) + " |")
    return "\n".join(lines) + "\n"
