"""``leaderboard verify``: re-compute a published row from what the leaderboard keeps beside it (:mod:`.artifacts`).

The row's committed checkpoint and config are loaded, the first N protocol pairs of each of its tasks are animated
again with its method and scored again by the evaluator with the run's own evaluation settings (metrics, backends,
analysis size, face stride, frame cut); each metric's mean over those pairs is compared with the mean of the
published per-pair values of the same pairs. Pooled metrics (FID, KID) have no per-pair values: they are compared
with the row itself when the pairs are the row's own (``--max-pairs 0`` for a whole-protocol row), and skipped
otherwise. The per-pair table is also checked against the board: its mean over all of a task's pairs is the row's
value, up to float32 rounding.

Tolerance (why: docs/benchmark.md "Re-checking a row"): :data:`EXACT` when the committed checkpoint holds the
run's weights exactly (no weights, full precision, or every value survived float16); when float16 rounded them,
:data:`HALF_PIXELS` for metrics of the pixels and :data:`HALF_FACES` for those read through face analysis.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..core.config import EvalParams, Params, from_dict
from ..core.device import device_name, resolve_device
from ..core.domains import TASKS
from ..core.errors import CheckpointError, DatasetError, LeaderboardError, UserError
from ..core.io import sha256_file
from .artifacts import checkpoint_path, checkpoint_record, pairs_path
from .store import csv_path, current, lock, metric_directions, read_leaderboard, read_rows


@dataclass(frozen=True)
class Tolerance:
    """``|published - recomputed| <= atol + rtol * max(|published|, |recomputed|)``."""

    rtol: float
    atol: float
    why: str

    def bound(self, a: float, b: float) -> float:
        return self.atol + self.rtol * max(abs(a), abs(b))


#: the same weights: only float32 storage of the per-pair values and another machine's kernels (BLAS, ONNX runtime
#: threads) can move a value (on the machine that published the row every value measured so far came back bit-equal)
EXACT = Tolerance(1e-5, 1e-6, "the checkpoint holds the run's weights exactly")
#: float16 weights move outputs by a fraction of a grey level: mean-face's float16 mean moved L1/PSNR/SSIM/LPIPS by
#: at most 3e-4 of their value (2 pairs per task of the demo board)
HALF_PIXELS = Tolerance(5e-3, 1e-4, "float16 weights, a metric of the pixels")
#: face analysis amplifies such changes (a landmark snaps to another edge of a blurry face): on the same check the
#: 3DMM, keypoint and identity metrics moved by up to 5.2% of their value, 0.003 in absolute terms near zero
HALF_FACES = Tolerance(1e-1, 1e-2, "float16 weights, a metric read through face analysis")
#: the per-pair table against the board's value: float32 storage only
STORED = Tolerance(1e-6, 1e-9, "float32 storage")


@dataclass
class Check:
    """One metric of one task: the published and the recomputed mean over the same pairs."""

    task: str
    metric: str
    n_pairs: int
    published: float | None
    recomputed: float | None
    tolerance: Tolerance
    problem: str = ""  # a disagreement that is not a number (another backend, values on other pairs)

    @property
    def diff(self) -> float | None:
        if self.published is None or self.recomputed is None:
            return None
        return abs(self.published - self.recomputed)

    @property
    def agree(self) -> bool:
        if self.problem:
            return False
        if self.published is None or self.recomputed is None:
            return self.published is None and self.recomputed is None
        return self.diff <= self.tolerance.bound(self.published, self.recomputed)  # type: ignore[operator]


@dataclass
class Verification:
    run_id: str
    method: str
    checkpoint: str
    lossless: bool  # the checkpoint holds the run's weights exactly
    device: str
    row_device: str
    max_pairs: int
    checks: list[Check] = field(default_factory=list)
    table_checks: list[Check] = field(default_factory=list)  # the per-pair table against the board
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.agree for c in [*self.checks, *self.table_checks])

    def text(self) -> str:
        """The report ``leaderboard verify`` prints."""
        pairs = f"the first {self.max_pairs} protocol pair(s)" if self.max_pairs else "every protocol pair"
        head = [f"run {self.run_id} ({self.method}), checkpoint {self.checkpoint} "
                f"({'exact weights' if self.lossless else 'weights rounded to float16'}): {pairs} of each task, "
                f"on {self.device} (published on {self.row_device})"]
        head += [f"tolerance |diff| <= {t.atol:g} + {t.rtol:g} x |value|: {t.why}"
                 for t in dict.fromkeys(c.tolerance for c in self.checks)]
        fmt = _fmt
        table = pd.DataFrame([{"task": c.task, "metric": c.metric, "pairs": c.n_pairs, "published": fmt(c.published),
                               "recomputed": fmt(c.recomputed), "|diff|": fmt(c.diff, ".3g"),
                               "agree": ("yes" if c.agree else "NO") + (f" ({c.problem})" if c.problem else "")}
                              for c in self.checks])
        lines = head + ([table.to_string(index=False)] if len(table) else [])
        lines += [f"skipped: {s}" for s in self.skipped]
        off = [c for c in self.table_checks if not c.agree]
        lines.append(f"per-pair table vs board (mean over all of a task's pairs = the row's value, {STORED.why}): "
                     f"{len(self.table_checks) - len(off)} of {len(self.table_checks)} agree")
        lines += [f"  NO: {c.task} {c.metric}: board {_fmt(c.published)}, table {_fmt(c.recomputed)}" for c in off]
        bad = sum(not c.agree for c in self.checks)
        lines.append(f"{len(self.checks) - bad} of {len(self.checks)} recomputed values agree"
                     + ("" if self.ok else " — VERIFICATION FAILED"))
        return "\n".join(lines)


def _fmt(v: float | None, spec: str = ".7g") -> str:
    return "–" if v is None else format(v, spec)


def _mean(values: pd.Series) -> float | None:
    """The mean of per-pair values as the table stores them (float32), in pair order."""
    vals = values.astype("float32").astype("float64")
    return float(vals.mean()) if len(vals) else None


def _number(cell: str) -> float | None:
    return float(cell) if cell not in ("", None) and math.isfinite(float(cell)) else None


def row_of(leaderboard_dir: str | Path, benchmark: str, run_id: str) -> dict[str, dict[str, str]]:
    """The rows of ``run_id`` by task, or a :class:`LeaderboardError`."""
    path = csv_path(leaderboard_dir, benchmark)
    with lock(path):
        rows = [r for r in read_rows(path)[0] if r["run_id"] == run_id]
    if not rows:
        raise LeaderboardError(f"no row of run {run_id!r} in {path}",
                               hint="run ids are in the CSV's run_id column and `leaderboard show`")
    return {r["task"]: r for r in sorted(rows, key=lambda r: list(TASKS).index(r["task"]))}


def current_runs(leaderboard_dir: str | Path, benchmark: str) -> tuple[list[str], list[str]]:
    """The run ids of the board's current rows (what the pages show): those with a committed checkpoint, and those
    without one (re-checkable only with ``--checkpoint``)."""
    path = csv_path(leaderboard_dir, benchmark)
    with lock(path):
        df = current(read_leaderboard(path)).sort_values(["date", "run_id"])
    has = df["checkpoint"].fillna("") != ""
    return list(dict.fromkeys(df.loc[has, "run_id"])), list(dict.fromkeys(df.loc[~has, "run_id"]))


#: what "the best published checkpoint" of a method means (``animate`` without ``--checkpoint``): the run whose rows
#: follow the driver's head pose most closely, averaged over the method's tasks on the board
RANK_METRIC = "apd_rel_deg"


@dataclass
class Published:
    """A committed checkpoint the board ranks: its run, the run's mean :data:`RANK_METRIC` over ``n_tasks``."""

    path: Path
    run_id: str
    score: float | None
    n_tasks: int

    def text(self) -> str:
        score = f"mean {RANK_METRIC} {self.score:.4g} over {self.n_tasks} task(s)" if self.score is not None \
            else f"no {RANK_METRIC} on the board"
        return f"{self.path} (run {self.run_id}, {score})"


def best_published(leaderboard_dir: str | Path, benchmark: str, method: str) -> Published:
    """The committed checkpoint of ``method`` whose run the board ranks best on :data:`RANK_METRIC` (its mean over
    the run's current rows; runs without a value rank last, then newer first), its sha256 checked; a
    :class:`CheckpointError` saying what to do when the board has none."""
    folder = Path(leaderboard_dir)
    path = csv_path(folder, benchmark)
    with lock(path):
        df = current(read_leaderboard(path))
    df = df[(df["method"] == method) & (df["checkpoint"].fillna("") != "")]
    if df.empty:
        raise CheckpointError(f"no published {method} checkpoint on the {benchmark} board ({path})",
                              hint=f"train one with `toontalker-bench run --method {method}` (it publishes its "
                                   "checkpoint), or pass --checkpoint PATH")
    sign = 1.0 if metric_directions()[RANK_METRIC] == "lower" else -1.0
    runs = df.groupby("run_id").agg(score=(RANK_METRIC, "mean"), n=(RANK_METRIC, "count"), date=("date", "max"))
    runs["key"] = sign * runs["score"]
    best = runs.reset_index().sort_values(["date", "run_id"], ascending=False) \
        .sort_values("key", kind="stable", na_position="last").iloc[0]
    row = df[df["run_id"] == best["run_id"]].iloc[0][["run_id", "method", "checkpoint"]].to_dict()
    ckpt, _ = committed_checkpoint(folder, row, None)
    score = None if pd.isna(best["score"]) else float(best["score"])
    return Published(ckpt, str(best["run_id"]), score, int(best["n"]))


def verify_run(params: Params, run_id: str, *, benchmark: str | None = None, max_pairs: int = 1,
               tasks: list[str] | tuple[str, ...] = (), checkpoint: str | Path | None = None,
               cache: bool = True) -> Verification:
    """Re-compute run ``run_id``'s rows on the first ``max_pairs`` protocol pairs of each task (0: all); see the
    module docstring. ``checkpoint``: a copy fetched from elsewhere, for a row whose checkpoint was not committed."""
    from ..data.version import dataset_version
    from ..eval.evaluator import evaluate as run_evaluator
    from ..models.registry import build_method

    if max_pairs < 0:
        raise UserError("--max-pairs must be >= 0 (0: every protocol pair)")
    folder = Path(params.run.leaderboard_dir)
    rows = row_of(folder, benchmark or params.run.benchmark, run_id)
    first = next(iter(rows.values()))
    method = first["method"]
    bad = [t for t in tasks if t not in rows]
    if bad:
        raise UserError(f"run {run_id} has no row for task {bad[0]!r}", hint=f"its tasks: {', '.join(rows)}")
    chosen = [t for t in rows if not tasks or t in tasks]
    dataset = Path(params.build.out_dir)
    have = dataset_version(dataset) if (dataset / "clips.parquet").is_file() else "no dataset"
    if have != first["dataset_version"]:
        raise DatasetError(f"run {run_id} was measured on dataset {first['dataset_version']}, {dataset} is {have}",
                           hint="check out the commit whose dvc.lock names that version and `dvc pull` / `dvc repro`")
    config_path = checkpoint_path(folder, method, run_id, ".yaml")
    table_path = pairs_path(folder, method, run_id)
    for p in (config_path, table_path):
        if not p.is_file():
            raise LeaderboardError(f"run {run_id} has no {p.relative_to(folder)}",
                                   hint="it was published before runs kept it: `leaderboard backfill RUN_DIR`")
    ckpt, lossless = committed_checkpoint(folder, first, checkpoint)
    saved = yaml.safe_load(config_path.read_text())
    ep, pooled, whole = _settings(saved["params"]["eval"], max_pairs, cache)
    device = resolve_device(params.run.device)
    model = build_method(method, cfg=saved["config"], checkpoint=ckpt)
    with tempfile.TemporaryDirectory() as out:
        result = run_evaluator(model, dataset, out, ep, chosen, device)
    published = pd.read_parquet(table_path)
    done = Verification(run_id, method, str(ckpt), lossless, device_name(device), first["device"], ep.max_pairs)
    for task in chosen:
        got = result.pairs[result.pairs["task"] == task].sort_values("pair_id")
        pub = published[(published["task"] == task) & published["pair_id"].isin(got["pair_id"])]
        for metric, value in result.metrics[task].items():
            tolerance = tolerance_for(metric, lossless)
            problem = _backend(rows[task].get(f"{metric}_backend", ""), value.backend)
            if metric in pooled:  # the row's own value: these pairs are all of the row's
                done.checks.append(Check(task, metric, len(got), _number(rows[task].get(metric, "")), value.value,
                                         tolerance, problem))
                continue
            mine = pub[pub["metric"] == metric].sort_values("pair_id")
            theirs = got[["pair_id", metric]].dropna()
            if list(mine["pair_id"]) != list(theirs["pair_id"]):
                problem = problem or f"values on {len(mine)} published vs {len(theirs)} recomputed pairs"
            done.checks.append(Check(task, metric, len(got), _mean(mine["value"]), _mean(theirs[metric]), tolerance,
                                     problem))
        done.table_checks += _table_against_board(published, task, rows[task])
    done.skipped = [f"{m}: pooled over all of a row's pairs; re-checked with --max-pairs 0" for m in pooled
                    if not whole and any(_number(r.get(m, "")) is not None for r in rows.values())]
    return done


def _settings(saved: dict[str, Any], max_pairs: int, cache: bool) -> tuple[EvalParams, list[str], bool]:
    """The run's evaluation settings cut to ``max_pairs`` pairs per task, its pooled metrics, and whether the pairs
    are still all of the row's (the run's own ``max_pairs``, 0: every pair); pooled metrics are dropped when not."""
    from ..eval.evaluator import distribution

    ep: EvalParams = from_dict(EvalParams, saved, "eval.")
    n = max_pairs if max_pairs and (not ep.max_pairs or max_pairs < ep.max_pairs) else ep.max_pairs
    whole = n == ep.max_pairs
    pooled = distribution(list(dict.fromkeys([*ep.self_metrics, *ep.cross_metrics])))
    if not whole:
        ep = dataclasses.replace(ep, self_metrics=[m for m in ep.self_metrics if m not in pooled],
                                 cross_metrics=[m for m in ep.cross_metrics if m not in pooled])
    return dataclasses.replace(ep, max_pairs=n, samples=0, cache=ep.cache and cache), pooled, whole


def tolerance_for(metric: str, lossless: bool) -> Tolerance:
    from ..metrics import metric_class

    if lossless:
        return EXACT
    return HALF_FACES if "faces" in metric_class(metric).needs else HALF_PIXELS


def _backend(published: str, recomputed: str) -> str:
    return "" if published == recomputed else f"backend {recomputed!r}, published {published!r}"


def _table_against_board(published: pd.DataFrame, task: str, row: dict[str, str]) -> list[Check]:
    """The per-pair table's mean over all of ``task``'s pairs against the board's value, per metric."""
    out = []
    for metric, g in published[published["task"] == task].groupby("metric", sort=True):
        board = _number(row.get(str(metric), ""))
        out.append(Check(task, str(metric), len(g), board, _mean(g.sort_values("pair_id")["value"]), STORED))
    return out


def committed_checkpoint(folder: Path, row: dict[str, str], given: str | Path | None) -> tuple[Path, bool]:
    """The checkpoint to load, the committed one (its sha256 checked) or ``given``, and whether it holds the run's
    weights exactly."""
    if given is not None:
        if not Path(given).is_file():
            raise CheckpointError(f"checkpoint not found: {given}", hint="check the path")
        return Path(given), _full_precision(given)
    if not row.get("checkpoint"):
        raise CheckpointError(f"run {row['run_id']} has no committed checkpoint (over the budget, or published before "
                              "checkpoints were kept)",
                              hint="fetch it from where its publisher hosts it (e.g. huggingface_hub.hf_hub_download) "
                                   "and pass --checkpoint PATH, or `leaderboard backfill RUN_DIR` if you have the run")
    path = folder / row["checkpoint"]
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} named by run {row['run_id']} is missing",
                              hint="restore it from git (git checkout -- leaderboard/checkpoints)")
    record = checkpoint_record(folder, row["method"], row["run_id"])
    if sha256_file(path) != record["sha256"]:
        raise CheckpointError(f"checkpoint {path} does not match the sha256 its record holds",
                              hint="restore it from git")
    return path, bool(record["lossless"])


def _full_precision(path: str | Path) -> bool:
    """A checkpoint without float16 tensors (a run's own): taken to hold the published run's weights."""
    import torch

    from ..models.checkpoint import read_checkpoint

    return not any(t.dtype == torch.float16 for t in read_checkpoint(path)[0].values())
