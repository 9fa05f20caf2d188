"""Evaluate a method on the protocol pairs: animate every pair, compute the task's metrics, write the results.

Every pair is animated with relative motion (w.r.t. the first driving frame). Per-pair metrics
(``toontalker_bench.metrics``) are computed pair by pair and reduced per task as the mean over pairs of per-pair
means, the metrics package's convention; distribution metrics (FID/KID) compare all outputs of a task with the
target (= source) domain's test frames. Under DDP the pairs are sharded across ranks and rank 0 gathers the
per-pair values and Inception features, so the numbers equal a single-process run's.

Outputs in ``out_dir``: ``metrics.json`` (numbers only, for ``dvc metrics``), ``metrics_detail.json`` (backend,
frame count, reason per value), ``pairs.csv`` (one row per pair), ``samples/<task>.png`` and
``samples/<task>.mp4|.gif`` (source | driving | output).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from ..config import EvalParams
from ..domains import TASKS, is_cross
from ..errors import AssetError, ConfigError
from ..io import write_json, write_text
from ..metrics import METRICS, Metric, MetricValue, Pair
from ..metrics.base import video_mean
from ..models.base import Method, to_tensor, to_uint8
from ..progress import progress
from ..video import read_frames
from ..data.dataset import clip_table, load_pairs
from .visual import grid, save_clip, save_png, triptych

log = logging.getLogger(__name__)

DISTRIBUTION_METRICS = ("fid", "kid")
FACE_METRICS = ("akd", "csim", "aed_id", "aed_exp", "apd_deg", "face_miss_rate")


@dataclass
class EvalResult:
    metrics: dict[str, dict[str, MetricValue]]  # task -> metric -> value
    pairs: pd.DataFrame
    seconds: float
    out_dir: Path


def task_metrics(task: str, ep: EvalParams) -> list[str]:
    return list(ep.cross_metrics if is_cross(task) else ep.self_metrics)


def check_metric_names(ep: EvalParams) -> None:
    known = set(METRICS.names())
    for key in ("self_metrics", "cross_metrics"):
        bad = [m for m in getattr(ep, key) if m not in known]
        if bad:
            raise ConfigError(f"unknown metric {bad[0]!r} in eval.{key}", hint=f"known: {', '.join(sorted(known))}")


# ------------------------------------------------------------------------------------------------ metrics adapter
def _make_metric(name: str, ep: EvalParams, device: str, dataset_dir: str | None = None) -> Metric:
    """Build a registered metric, passing the eval params (and the dataset being evaluated) its constructor accepts."""
    cls = METRICS.get(name).factory
    offered = {"device": device, "batch_size": ep.batch_size, "min_frames": ep.fid_min_frames,
               "id_backend": ep.id_backend, "backend": ep.motion_backend, "dataset_dir": dataset_dir}
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in offered.items() if k in accepted})


def _pair_value(metric: Metric, pair: Pair) -> MetricValue:
    """One metric on one pair; a missing model file gives ``None`` with the reason instead of failing the run."""
    metric.reset()
    try:
        metric.update(pair)
        return metric.compute()
    except AssetError as e:
        return MetricValue(metric.name, None, getattr(metric, "backend", ""), 0, {}, str(e))


def _reduce(name: str, values: list[MetricValue]) -> MetricValue:
    ok = [v for v in values if v.value is not None]
    backend = next((v.backend for v in values if v.backend), "")
    reasons = sorted({v.reason for v in values if v.value is None and v.reason})
    out = video_mean(name, [float(v.value) for v in ok], backend, sum(v.n for v in ok),
                     {"pairs_without_value": len(values) - len(ok)},
                     reason=reasons[0] if reasons else "no pairs")
    if reasons and out.value is not None:
        out.extra["reasons"] = reasons[:3]
    return out


def _features(frames: np.ndarray, ep: EvalParams, device: str) -> np.ndarray:
    from ..metrics.fid import extractor

    return extractor(device, ep.batch_size).features(frames, "inception")


def _distribution(name: str, gen: np.ndarray, ref: np.ndarray, ep: EvalParams, device: str) -> MetricValue:
    """FID/KID of a task's outputs against the target domain's test frames (Inception features)."""
    from ..metrics.fid import distribution_value, extractor

    return distribution_value(name, gen, ref, extractor(device, ep.batch_size).backend, ep.fid_min_frames)


# ------------------------------------------------------------------------------------------------ frames
class _Frames:
    """Protocol frames decoded at the method's size."""

    def __init__(self, root: Path, clips: pd.DataFrame, size: int) -> None:
        self.root, self.size = root, size
        self.paths = dict(zip(clips["clip_id"], clips["path"]))
        self.clips = clips

    def window(self, clip_id: str, start: int, n: int) -> np.ndarray:
        return read_frames(self.root / self.paths[clip_id], start, start + n, size=(self.size, self.size))

    def reference(self, domain: str, n: int) -> np.ndarray:
        """``n`` test frames of ``domain``, evenly spaced over all its test clips (fewer if there are fewer)."""
        test = self.clips[(self.clips["split"] == "test") & (self.clips["domain"] == domain)].sort_values("clip_id")
        counts = test["n_frames"].astype(int).to_numpy()
        total = int(counts.sum())
        picks = np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int)) if total else []
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if total else []
        out = []
        for clip_id, s, c in zip(test["clip_id"], starts, counts):
            local = [p - s for p in picks if s <= p < s + c]
            if local:
                frames = read_frames(self.root / self.paths[clip_id], size=(self.size, self.size))
                out.extend(frames[[i for i in local if i < len(frames)]])
        return np.stack(out) if out else np.zeros((0, self.size, self.size, 3), np.uint8)


# ------------------------------------------------------------------------------------------------ the runner
def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def evaluate(method: Method, dataset_dir: str | Path, out_dir: str | Path, ep: EvalParams,
             tasks: list[str], device: torch.device | str = "cpu") -> EvalResult:
    """Animate the protocol pairs of ``tasks`` with ``method`` and write the results (rank 0) to ``out_dir``."""
    root, out_dir = Path(dataset_dir), Path(out_dir)
    device = torch.device(device)
    check_metric_names(ep)
    for task in tasks:
        if is_cross(task) and not method.capabilities.cross_domain:
            raise ConfigError(f"method {method.name!r} cannot do cross-domain task {task!r}",
                              hint="pass --tasks self_real self_cartoon")
    pairs = load_pairs(root, tasks)
    frames = _Frames(root, clip_table(root), method.size)
    rank, world = _rank_world()
    mdev = "cuda" if device.type == "cuda" else "cpu"
    method.to(device).eval()
    analyzer = None
    t0 = time.perf_counter()
    results: dict[str, dict[str, MetricValue]] = {}
    rows: list[dict[str, Any]] = []
    for task in tasks:
        src_dom, drv_dom = TASKS[task]
        tp = pairs[pairs["task"] == task]
        if ep.max_pairs:
            tp = tp.head(ep.max_pairs)
        names = task_metrics(task, ep)
        per_pair = [m for m in names if m not in DISTRIBUTION_METRICS]
        dist_names = [m for m in names if m in DISTRIBUTION_METRICS]
        metrics = {m: _make_metric(m, ep, mdev, str(root)) for m in per_pair}
        if analyzer is None and any(m in FACE_METRICS for m in per_pair):
            from ..faces.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer()
        mine = list(tp.itertuples())[rank::world]
        local_rows, local_feats, samples = [], [], []
        for row in progress(mine, desc=f"{method.name} {task}", unit="pair"):
            n = int(row.n_frames) if not ep.max_frames else min(int(row.n_frames), ep.max_frames)
            source = frames.window(row.source_clip, int(row.source_frame), 1)[0]
            driving = frames.window(row.driving_clip, int(row.driving_start), n)
            out = method.animate(to_tensor(source).to(device), to_tensor(driving).to(device),
                                 source_domain=src_dom, driving_domain=drv_dom, relative=True)
            generated = to_uint8(out)
            pair = Pair(generated=generated, driving=driving, source=source, pair_id=row.pair_id, analyzer=analyzer)
            values = {m: _pair_value(metrics[m], pair) for m in per_pair}
            local_rows.append({"task": task, "pair_id": row.pair_id, "source_clip": row.source_clip,
                               "driving_clip": row.driving_clip, "n_frames": n,
                               **{m: v.to_dict() for m, v in values.items()}})
            if dist_names:
                local_feats.append(_features(generated, ep, mdev))
            if len(samples) < ep.samples:
                samples.append((row.pair_id, source, driving, generated))
        gathered = [r for part in _gather(local_rows, world) for r in part]
        feats = [f for part in _gather(local_feats, world) for f in part]
        samples = sorted((x for part in _gather(samples, world) for x in part), key=lambda x: x[0])[:ep.samples]
        if rank != 0:
            continue
        gathered.sort(key=lambda r: r["pair_id"])
        task_values = {m: _reduce(m, [MetricValue(**r[m]) for r in gathered]) for m in per_pair}
        if dist_names:
            ref = _features(frames.reference(src_dom, ep.fid_reference_frames), ep, mdev)
            gen = np.concatenate(feats) if feats else np.zeros((0, 2048), np.float32)
            for m in dist_names:
                task_values[m] = _distribution(m, gen, ref, ep, mdev)
        results[task] = {m: task_values[m] for m in names}
        rows.extend({**{k: r[k] for k in ("task", "pair_id", "source_clip", "driving_clip", "n_frames")},
                     **{m: r[m]["value"] for m in per_pair}} for r in gathered)
        if samples:
            _write_samples(out_dir / "samples", task, [x[1:] for x in samples])
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(rows)
    if rank == 0:
        _write_results(out_dir, method, results, table, seconds, int(table["n_frames"].sum()) if len(table) else 0)
    return EvalResult(results, table, seconds, out_dir)


def _write_samples(folder: Path, task: str, samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    rows = []
    for source, driving, generated in samples:
        idx = np.linspace(0, len(driving) - 1, min(4, len(driving))).round().astype(int)
        rows.append([source, *driving[idx], *generated[idx]])
    save_png(folder / f"{task}.png", grid(rows))
    t = min(len(d) for _, d, _ in samples)
    video = np.concatenate([triptych(s, d[:t], g[:t]) for s, d, g in samples], axis=1)
    save_clip(folder / task, video)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _write_results(out_dir: Path, method: Method, results: dict[str, dict[str, MetricValue]], table: pd.DataFrame,
                   seconds: float, n_frames: int) -> None:
    write_json(out_dir / "metrics.json", {t: {m: _finite(v.value) for m, v in ms.items()} for t, ms in results.items()})
    write_json(out_dir / "metrics_detail.json", {
        "method": method.name, "size": method.size, "seconds": round(seconds, 3),
        "frames_per_s": round(n_frames / max(seconds, 1e-9), 3),
        "tasks": {t: {m: v.to_dict() for m, v in ms.items()} for t, ms in results.items()}})
    write_text(out_dir / "pairs.csv", table.to_csv(index=False))
    for task, ms in results.items():
        for m, v in ms.items():
            if v.value is None:
                log.warning("%s %s: %s not computed: %s", method.name, task, m, v.reason)
