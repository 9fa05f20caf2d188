"""Does each metric measure what it claims? Known errors injected into the exact answer, metric by metric.

The ``oracle-render`` answer to a protocol pair (:mod:`toontalker_bench.data.synth.oracle`: the source identity drawn
with the driving clip's ground-truth motion) is perturbed by one kind of error at a time, at growing strength, and
evaluated against the real driving frames like any method's output. Pairs of every task: the self-reenactment pairs
of each domain (verdicts keyed by the domain) and the cross-domain pairs (keyed by the task, ``real2cartoon``,
``cartoon2real``: there the output and the driver are read in two domains, so a metric must hold across them):

- **pose**: yaw, pitch and roll offset by ``delta`` degrees on every frame after the first (the first frame stays
  right, so the change since it — what ``apd_rel_deg`` reads — is off by ``delta`` too);
- **expression**: every morph moved by ``epsilon`` (in a fixed random direction per morph, clipped to [0, 1]) after
  the first frame;
- **identity**: the same motion drawn on another identity of the source's domain (framed as that clip's first frame);
- **blur**: a Gaussian blur of ``sigma`` pixels (at the dataset's 256 px).

A metric is *monotone* when it gets worse from the weakest to the strongest level of its own error and no step
moves it back by more than ``SLACK`` of that total change (below the estimator's noise floor a 2-degree step can
read as a small improvement), and *flat* under another error when its change there stays within ``TOLERANCE`` of
the change its own strongest error causes. Verdicts are per group; a task is held to those of the domains it reads and,
across domains, to its own.
Each metric declares the error it answers to and those it must ignore (``Metric.answers_to`` / ``ignores``): the pose
metrics answer to pose, the expression metrics to expression, CSIM to identity, the pixel metrics to blur.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.progress import progress
from ..faces.pose import N_MORPHS
from ..metrics import metric_class, metric_classes
from ..metrics.pair import resize_frames

log = logging.getLogger(__name__)

POSE_DEG = (0.0, 2.0, 5.0, 10.0)
EXPRESSION = (0.0, 0.1, 0.3, 0.5)
BLUR_SIGMA = (0.0, 1.0, 2.0, 4.0)
SLACK = 0.1  # a step of the own error may move a metric back by at most this fraction of its total change
TOLERANCE = 0.25  # a change under another error of at most this fraction of the metric's own strongest error's


def suite_metrics() -> tuple[str, ...]:
    """The metrics the suite holds to their declared errors (``answers_to``: the error a metric must grow with;
    ``ignores``: those it must not answer to), in declared order."""
    return tuple(c.name for c in metric_classes() if c.answers_to)


GROUPS = (("self_cartoon", "cartoon"), ("self_real", "real"), ("real2cartoon", "real2cartoon"),
          ("cartoon2real", "cartoon2real"))  # (task, the key its verdicts are filed under)


@dataclass
class Case:
    """One protocol pair, as the suite perturbs it."""

    group: str  # the verdicts' key: the domain of a self-reenactment pair, the task of a cross-domain one
    domain: str  # the source's (= the output's) domain
    source_clip: str
    source_frame: int
    driving_clip: str
    driving_start: int
    n_frames: int
    other_clip: str  # a clip of another identity of the same domain (for the identity swap)


def cases(dataset_dir: Path, per_domain: int, n_frames: int) -> list[Case]:
    """The first ``per_domain`` pairs of each task, each with a clip of another identity of the source's domain to
    swap in."""
    from ..core.domains import TASKS
    from ..data.dataset import clip_table

    clips = clip_table(dataset_dir)
    pairs = pd.read_parquet(dataset_dir / "protocol" / "pairs.parquet")
    ids = clips.set_index("clip_id")["identity"]
    out = []
    for task, group in GROUPS:
        domain = TASKS[task][0]
        for r in pairs[pairs.task == task].head(per_domain).itertuples():
            others = clips[(clips.domain == domain) & (clips.identity != ids[r.source_clip])].sort_values("clip_id")
            if others.empty:
                continue
            out.append(Case(group, domain, r.source_clip, int(r.source_frame), r.driving_clip, int(r.driving_start),
                            min(int(r.n_frames), n_frames), str(others.iloc[0]["clip_id"])))
    return out


def _perturbed(case: Case, root: Path, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """The oracle's answer to ``case`` with error ``kind`` at ``level``: uint8 ``(T, 256, 256, 3)``."""
    from scipy.ndimage import gaussian_filter

    from ..data.synth.oracle import clip_renderer, relative_motion

    src = clip_renderer(str(root), case.source_clip)
    drv = clip_renderer(str(root), case.driving_clip)
    motion = relative_motion(src.motion[case.source_frame],
                             drv.motion[case.driving_start:case.driving_start + case.n_frames])
    if kind == "pose":
        motion[1:, N_MORPHS:] += level
    elif kind == "expression":
        direction = np.where(np.random.default_rng(seed).random(N_MORPHS) < 0.5, -1.0, 1.0)
        moved = motion[1:, :N_MORPHS] + level * direction
        motion[1:, :N_MORPHS] = np.clip(moved, 0, 1)
    if kind == "identity" and level:  # the same motion drawn on another head (clamped to what it can draw)
        other = clip_renderer(str(root), case.other_clip)
        frames = np.stack([other.frame(0, m) for m in motion])
    else:
        frames = np.stack([src.frame(case.source_frame, m) for m in motion])
    if kind == "blur" and level:
        frames = np.stack([gaussian_filter(f.astype(np.float32), (level, level, 0)) for f in frames])
        frames = frames.round().clip(0, 255).astype(np.uint8)
    return frames


def levels(kind: str, short: bool = False) -> tuple[float, ...]:
    """The error strengths of ``kind``; ``short``: none and the strongest only (the fast check in the tests)."""
    full = {"pose": POSE_DEG, "expression": EXPRESSION, "identity": (0.0, 1.0), "blur": BLUR_SIGMA}[kind]
    return (full[0], full[-1]) if short else full


def measure(dataset_dir: str | Path, per_domain: int = 3, n_frames: int = 24, ep: Any = None,
            metrics: tuple[str, ...] | None = None, short: bool = False, output_size: int = 0) -> dict[str, Any]:
    """Evaluate every (error kind, level) on the suite's cases; returns per domain and metric the value at each level,
    the ``monotone`` flag and the cross-sensitivity figures (see the module docstring). ``output_size``: the perturbed
    answers are shrunk to it and evaluated as a method of that size is (pixel metrics against the driver at that
    size, face analysis on the enlarged frames); 0 = at the dataset's size."""
    from ..core.config import EvalParams
    from ..core.video import read_frames
    from ..data.dataset import clip_table
    from .evaluator import Evaluator

    metrics = metrics or suite_metrics()
    root = Path(dataset_dir)
    ep = ep or EvalParams()
    todo = cases(root, per_domain, n_frames)
    values: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    table = clip_table(root)
    paths = dict(zip(table["clip_id"], table["path"]))
    for group in dict.fromkeys(c.group for c in todo):
        mine = [c for c in todo if c.group == group]
        values[group] = {}
        kind_of_task = "self" if group in ("cartoon", "real") else "cross"
        # a metric is judged where the protocol reports it (pixel metrics compare with the driver: self tasks only)
        names = [m for m in metrics if kind_of_task in (metric_class(m).default_for or {kind_of_task})]
        for kind in ("pose", "expression", "identity", "blur"):
            per_level = []
            for level in progress(levels(kind, short), desc=f"sensitivity {group} {kind}", unit="level"):
                ev = Evaluator.from_params(names, ep, "cpu", motion_dataset=str(root))
                for c in mine:
                    gen = _perturbed(c, root, kind, level)
                    drv = read_frames(root / paths[c.driving_clip], c.driving_start, c.driving_start + c.n_frames)
                    src = read_frames(root / paths[c.source_clip], c.source_frame, c.source_frame + 1)
                    full = {}
                    if output_size and output_size < gen.shape[1]:
                        full = {"driving": drv, "source": src[0]}
                        gen, drv, src = (resize_frames(x, output_size) for x in (gen, drv, src))
                    ev.evaluate_pair(ev.pair(gen, drv, src[0], f"{c.source_clip}:{kind}={level}", full=full))
                per_level.append({m: v.value for m, v in ev.compute().items()})
            values[group][kind] = {m: [lv[m] for lv in per_level] for m in names}
    return {"levels": {k: list(levels(k, short)) for k in ("pose", "expression", "identity", "blur")},
            "cases": {g: sum(c.group == g for c in todo) for g in values}, "frames_per_case": n_frames,
            "output_size": output_size or None,
            "values": values, "metrics": judge(values, metrics)}


def _worse(metric: str, a: float, b: float) -> float:
    """How much worse ``b`` is than ``a`` for ``metric`` (positive = worse)."""
    return a - b if metric_class(metric).direction == "higher" else b - a


def judge(values: dict[str, dict[str, dict[str, list[float | None]]]], metrics: tuple[str, ...]
          ) -> dict[str, dict[str, Any]]:
    """Per metric and domain: ``monotone`` in its own error, and for each error it must ignore the ratio of the change
    that error causes to the change its own strongest error causes (``flat`` when every ratio is within
    ``TOLERANCE``). ``monotone`` / ``flat`` overall hold when they hold in every domain."""
    out: dict[str, dict[str, Any]] = {}
    for m in metrics:
        own = metric_class(m).answers_to
        res: dict[str, Any] = {"own_error": own, "domains": {}}
        for domain, kinds in values.items():
            if m not in kinds[own]:
                continue  # not reported for this group's task
            v = kinds[own][m]
            if any(x is None for x in v):
                res["domains"][domain] = {"monotone": False, "reason": "not computed at every level"}
                continue
            steps = [_worse(m, a, b) for a, b in zip(v, v[1:])]
            span = _worse(m, v[0], v[-1])
            cross = {}
            for other in metric_class(m).ignores:
                w = kinds[other][m]
                if any(x is None for x in w):
                    cross[other] = None
                    continue
                change = max(abs(x - w[0]) for x in w)
                cross[other] = round(change / span, 4) if span > 0 else None
            monotone = span > 0 and all(st >= -SLACK * span for st in steps)
            res["domains"][domain] = {"monotone": bool(monotone), "own_span": span,
                                      "cross": cross,
                                      "flat": all(r is not None and r <= TOLERANCE for r in cross.values())}
        doms = res["domains"].values()
        res["monotone"] = bool(doms) and all(d.get("monotone", False) for d in doms)
        res["flat"] = bool(doms) and all(d.get("flat", True) for d in doms)
        out[m] = res
    return out
