"""The evaluation engine: one :class:`Evaluator` behind ``evaluate metrics``, ``evaluate run``, ``run`` and
``evaluate validate-metrics``.

An evaluator holds one accumulating metric object per metric name (torchmetrics-style ``update`` / ``compute`` /
``reset`` / ``merge``). :meth:`Evaluator.evaluate_pair` returns one pair's own values and adds the pair to the
aggregates :meth:`Evaluator.compute` returns: per-pair metrics are the mean over pairs of per-pair means; the
distribution metrics (FID, KID) pool the generated frames of every pair against one **reference set** of real frames
(in the benchmark: frames of the output domain at the method's size from clips of identities no protocol pair uses as
a source, so copying a source is not rewarded by construction; in ``evaluate metrics``: ``--reference``).

Resolution: pixel metrics (L1, PSNR, SSIM, LPIPS) compare frames at the method's size; face analysis (detection,
68 landmarks, the 3DMM fit, identity embeddings, AKD) runs at ``analysis_size`` (256, the dataset's): the driving and
source frames are read at full clip size, generated frames are upscaled (bicubic) for face analysis only
(:class:`~toontalker_bench.metrics.pair.Pair`). The driving and source analyses are cached on disk by content, so
each is done once for every method.

:func:`evaluate` runs a method on the protocol pairs: every pair is animated with relative motion (w.r.t. the first
driving frame). Under DDP the pairs are sharded across ranks and rank 0 merges the metric objects, so the numbers
equal a single-process run's. Outputs in ``out_dir``: ``metrics.json`` (numbers only, for ``dvc metrics``),
``metrics_detail.json`` (backend, frame count, notes and reasons per value), ``pairs.csv`` (one row per pair),
``samples/<task>.png`` and ``samples/<task>.mp4|.webp`` (source | driving | output).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from ..core.config import EvalParams
from ..core.device import resolve_device
from ..core.domains import TASKS, Domain, is_cross
from ..core.errors import AssetError, ConfigError, MediaError, UserError
from ..core.io import write_json, write_text
from ..core.progress import progress
from ..core.video import read_frames
from ..core.visual import grid, save_clip, save_png, triptych
from ..data.dataset import clip_table, load_pairs, source_identities
from ..metrics import METRICS, Metric, MetricOptions, MetricValue, Pair, default_metrics, metric_class, metric_classes
from ..metrics.base import Need
from ..metrics.pair import AnalysisCache, load_frames, resize_frames
from ..models.base import Method, PairContext, to_tensor, to_uint8
from .verdicts import annotate

log = logging.getLogger(__name__)


def face_cache_dir() -> Path:
    """``$TOONTALKER_HOME/features/faces`` (read at call time)."""
    root = os.environ.get("TOONTALKER_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "toontalker-bench")
    return Path(root) / "features" / "faces"


def parse_metrics(names: str | Sequence[str] | None) -> list[str]:
    """``"fid,csim"`` or a list -> validated names (a metric's declared aliases, e.g. ``aed``, accepted); None: every
    metric declared default for a task kind."""
    if names is None:
        return default_metrics()
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    aliases = {a: c.name for c in metric_classes() for a in c.aliases}
    out = [aliases.get(n, n) for n in items]
    known = set(METRICS.names())
    bad = [n for n in out if n not in known]
    if bad:
        raise UserError(f"unknown metric {bad[0]!r}", hint=f"known: {', '.join(sorted(known))}")
    if not out:
        raise UserError("no metrics requested", hint=f"e.g. --metrics {','.join(default_metrics()[:4])}")
    return list(dict.fromkeys(out))


def needing(need: Need, names: Sequence[str]) -> list[str]:
    """Those of ``names`` whose metric declares ``need``."""
    return [n for n in names if need in metric_class(n).needs]


def distribution(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that pool every pair's frames (FID, KID) instead of averaging per-pair values."""
    return [n for n in names if metric_class(n).kind == "distribution"]


def metrics_help() -> str:
    """The ``--metrics`` help: every registered metric (↓ lower / ↑ higher is better) and which are the default."""
    classes = metric_classes()
    known = ", ".join(f"{c.name} {'↓' if c.direction == 'lower' else '↑'}" for c in classes)
    rest = [c.name for c in classes if not c.default_for]
    return f"Comma-separated, of: {known} (default: all{' but ' + ', '.join(rest) if rest else ''})."


class Evaluator:
    """Metric objects of one evaluation (one task, one ``evaluate metrics`` call); see the module docstring."""

    def __init__(self, metrics: str | Sequence[str] | None = None, *, device: str = "auto", batch_size: int = 16,
                 id_backend: str = "auto", motion_backend: str = "bfm3ddfa", fid_min_frames: int = 64,
                 analysis_size: int = 256, face_stride: int = 1, cache: bool = True,
                 detector: str = "retinaface", motion_dataset: str | None = None) -> None:
        if face_stride < 1 or analysis_size < 0:
            raise ConfigError("eval.face_stride must be >= 1 and eval.analysis_size >= 0")
        self.names = parse_metrics(metrics)
        self.options = MetricOptions(str(resolve_device(device)), batch_size, id_backend, motion_backend,
                                     fid_min_frames, motion_dataset)
        self.analysis_size, self.face_stride, self.detector = analysis_size, face_stride, detector
        self.disk = AnalysisCache(face_cache_dir()) if cache else None
        self._analyzer = None
        self.aggregates = {n: self._make(n) for n in self.names}
        self.errors: dict[str, str] = {}  # metric -> why it could not be computed (a missing model file...)

    @classmethod
    def from_params(cls, names: Sequence[str], ep: EvalParams, device: str = "auto",
                    motion_dataset: str | None = None) -> Evaluator:
        """``motion_dataset``: the built dataset being evaluated, for a motion backend fitted on its train split
        (``corpus-ridge``)."""
        return cls(names, device=device, batch_size=ep.batch_size, id_backend=ep.id_backend,
                   motion_backend=ep.motion_backend, fid_min_frames=ep.fid_min_frames,
                   analysis_size=ep.analysis_size, face_stride=ep.face_stride, cache=ep.cache,
                   motion_dataset=motion_dataset)

    def _make(self, name: str) -> Metric:
        return metric_class(name).from_options(self.options)

    @property
    def needs_faces(self) -> bool:
        return bool(needing("faces", self.names))

    @property
    def analyzer(self):  # noqa: ANN201 - faces.analyzer.FaceAnalyzer
        if self._analyzer is None:
            from ..faces.analyzer import FaceAnalyzer

            self._analyzer = FaceAnalyzer(self.detector)
        return self._analyzer

    def set_reference(self, frames: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        """The reference set of the distribution metrics (see the module docstring)."""
        for n in needing("reference", self.names):
            try:
                self.aggregates[n].set_reference(frames, features)
            except AssetError as e:
                self.errors[n] = str(e)

    def pair(self, generated: np.ndarray, driving: np.ndarray | None = None, source: np.ndarray | None = None,
             pair_id: str = "", coefficients: dict[str, np.ndarray] | None = None,
             full: dict[str, np.ndarray] | None = None) -> Pair:
        return Pair(generated, driving, source, pair_id, self.analyzer if self.needs_faces else None,
                    dict(coefficients or {}), dict(full or {}), self.analysis_size, self.face_stride, self.disk)

    def evaluate_pair(self, pair: Pair) -> dict[str, MetricValue]:
        """The pair's own value of every per-pair metric (a missing model file gives ``None`` with the reason, never
        a failed run); the pair also joins the aggregates. Distribution metrics (FID/KID) only pool the pair's frames:
        a distance between distributions has no per-pair value worth its cost (a 2048-D matrix root per pair)."""
        out = {}
        pooled = distribution(self.names)
        for name in self.names:
            if name in pooled:
                try:
                    self.aggregates[name].update(pair)
                except AssetError as e:
                    self.errors[name] = str(e)
                continue
            one = self._make(name)
            try:
                one.update(pair)
                out[name] = one.compute()
            except AssetError as e:
                self.errors[name] = str(e)
                out[name] = MetricValue(name, None, getattr(one, "backend", ""), 0, {}, str(e))
                continue
            self.aggregates[name].merge(one)
        return out

    def merge(self, other: Evaluator) -> None:
        """Add another evaluator's accumulated pairs (another rank's shard)."""
        for n, m in other.aggregates.items():
            self.aggregates[n].merge(m)
        self.errors = {**other.errors, **self.errors}

    def compute(self) -> dict[str, MetricValue]:
        out = {}
        for n, m in self.aggregates.items():
            v = m.compute()
            if v.value is None and n in self.errors:
                v.reason = self.errors[n]
            out[n] = v
        return out


# ------------------------------------------------------------------------------------------------ evaluate metrics
def evaluate_paths(generated: str | os.PathLike[str], driving: str | os.PathLike[str] | None = None,
                   source: str | os.PathLike[str] | None = None, metrics: str | Sequence[str] | None = None,
                   coefficients: dict[str, str] | None = None, reference: str | os.PathLike[str] | None = None,
                   **options: Any) -> dict[str, MetricValue]:
    """The ``evaluate metrics`` verb: frames from folders / videos, user errors for unusable inputs."""
    names = parse_metrics(metrics)
    if driving is None and (missing := needing("driving", names)):
        raise UserError(f"metric {missing[0]} needs --driving frames")
    if source is None and (missing := needing("source", names)):
        raise UserError(f"metric {missing[0]} needs a --source image")
    if reference is None and (missing := needing("reference", names)):
        raise UserError(f"metric {missing[0]} needs --reference frames (real frames of the generated frames' domain)",
                        hint="pass a folder of images or a video as --reference")
    ev = Evaluator(names, **options)
    if reference is not None:
        from ..metrics.fid import extractor

        ext = extractor(ev.options.device, ev.options.batch_size)
        ev.set_reference(features=ext.features_of_path(reference))
    # FID/KID alone: features straight from the files (mixed resolutions allowed, as in pytorch-fid)
    if len(distribution(names)) == len(names):
        from ..metrics.fid import extractor

        ext = extractor(ev.options.device, ev.options.batch_size)
        feats = ext.features_of_path(generated)
        for n in names:
            ev.aggregates[n]._gen.append(feats)  # type: ignore[attr-defined]
        return ev.compute()
    gen = load_frames(generated, "generated")
    drv = load_frames(driving, "driving") if driving is not None else None
    if drv is not None and len(drv) < len(gen):
        raise MediaError(f"the driving video has {len(drv)} frames, fewer than the {len(gen)} generated ones",
                         hint="generated and driving frames must align 1:1")
    if drv is not None and len(drv) > len(gen):
        raise MediaError(f"the generated video has {len(gen)} frames, fewer than the {len(drv)} driving ones",
                         hint="the method stopped early, or the wrong files were given")
    src = load_frames(source, "source")[0] if source is not None else None
    coeffs = {k: np.load(v) for k, v in (coefficients or {}).items()}
    pair = ev.pair(gen, drv, src, Path(generated).name, coeffs)
    if ev.needs_faces:
        for which in ("generated", "driving", "source"):
            if getattr(pair, which) is not None and not pair.faces(which).has_landmarks.any():
                where = {"generated": generated, "driving": driving, "source": source}[which]
                raise MediaError(f"no face found in any {which} frame ({where})",
                                 hint="the face metrics need face crops; check the input or drop face metrics")
    ev.evaluate_pair(pair)
    return ev.compute()


# ------------------------------------------------------------------------------------------------ the benchmark
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


class ProtocolFrames:
    """Protocol frames: read once at full clip size (face analysis), resized to the method's size (its input and
    the pixel metrics)."""

    def __init__(self, root: Path, clips: pd.DataFrame, size: int) -> None:
        self.root, self.size = root, size
        self.paths = dict(zip(clips["clip_id"], clips["path"]))
        self.clips = clips

    def window(self, clip_id: str, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        full = read_frames(self.root / self.paths[clip_id], start, start + n)
        small = full if full.shape[1] == self.size else resize_frames(full, self.size)
        return small, full

    def reference(self, domain: str, n: int, exclude_identities: set[str] | frozenset[str] = frozenset()
                  ) -> np.ndarray:
        """``n`` frames of ``domain`` at the method's size, evenly spaced over every clip whose identity is not in
        ``exclude_identities`` (the pairs' sources: a reference holding the sources would reward copying them)."""
        ok = (self.clips["domain"] == domain) & ~self.clips["identity"].astype(str).isin(exclude_identities)
        pool = self.clips[ok].sort_values("clip_id")
        counts = pool["n_frames"].astype(int).to_numpy()
        total = int(counts.sum())
        picks = np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int)) if total else []
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if total else []
        out = []
        for clip_id, s, c in zip(pool["clip_id"], starts, counts):
            local = [p - s for p in picks if s <= p < s + c]
            if local:
                frames = read_frames(self.root / self.paths[clip_id])
                out.extend(resize_frames(frames[[i for i in local if i < len(frames)]], self.size))
        return np.stack(out) if out else np.zeros((0, self.size, self.size, 3), np.uint8)


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


@dataclass
class AnimatedPair:
    """One protocol pair as :func:`animate_pairs` animated it: the frames at the method's size (``source``
    ``(S, S, 3)``, ``driving`` ``(T, S, S, 3)`` uint8), the same frames at full clip size for face analysis, the
    method's inputs as tensors on the device, and its ``output`` ``(T, 3, S, S)`` (``None`` when a bracket could not
    draw the pair, with the reason in ``unavailable``)."""

    row: Any  # the pairs-table row (pair_id, clips, frames)
    n_frames: int
    source: np.ndarray
    source_full: np.ndarray
    driving: np.ndarray
    driving_full: np.ndarray
    source_t: torch.Tensor
    driving_t: torch.Tensor
    output: torch.Tensor | None
    unavailable: str = ""


def animate_pairs(method: Method, frames: ProtocolFrames, pairs: pd.DataFrame, domains: tuple[Domain, Domain],
                  device: torch.device, *, max_frames: int = 0, self_driven: bool = False, desc: str = "",
                  shard: tuple[int, int] = (0, 1)) -> Iterator[AnimatedPair]:
    """Animate the protocol pairs of one task (``domains``: source, driving) with relative motion, the pairs of
    ``shard`` = (rank, world) only; ``max_frames`` (0 = all) cuts each driving window. ``self_driven``: the first
    driving frame is the source (``evaluate diagnose``). A method that needs the pair is given its
    :class:`PairContext`; a bracket that cannot draw a pair (``oracle-render`` on a clip its renderer did not make)
    yields it without output, any other method's refusal stops the run."""
    rank, world = shard
    for row in progress(list(pairs.itertuples())[rank::world], desc=desc, unit="pair"):
        n = min(int(row.n_frames), max_frames) if max_frames else int(row.n_frames)
        driving, driving_full = frames.window(row.driving_clip, int(row.driving_start), n)
        if self_driven:
            source_clip, source_frame = row.driving_clip, int(row.driving_start)
            source, source_full = driving[0], driving_full[0]
        else:
            source_clip, source_frame = row.source_clip, int(row.source_frame)
            small, full = frames.window(source_clip, source_frame, 1)
            source, source_full = small[0], full[0]
        source_t, driving_t = to_tensor(source).to(device), to_tensor(driving).to(device)
        kwargs: dict[str, Any] = {}
        if method.capabilities.needs_pair_context:
            kwargs["context"] = PairContext(str(frames.root), source_clip, source_frame, row.driving_clip,
                                            int(row.driving_start), n)
        try:
            out = method.animate(source_t, driving_t, source_domain=domains[0], driving_domain=domains[1],
                                 relative=True, **kwargs)
        except UserError as e:
            if not method.capabilities.bracket:
                raise
            log.warning("%s cannot answer %s: %s", method.name, row.pair_id, e)  # e.g. a clip it cannot draw
            out, unavailable = None, str(e)
        else:
            unavailable = ""
        yield AnimatedPair(row, n, source, source_full, driving, driving_full, source_t, driving_t, out, unavailable)


def evaluate(method: Method, dataset_dir: str | Path, out_dir: str | Path, ep: EvalParams,
             tasks: list[str], device: torch.device, split: str = "test") -> EvalResult:
    """Animate the protocol pairs of ``tasks`` with ``method`` and write the results (rank 0) to ``out_dir``;
    ``split="train"`` uses pairs drawn the same way from the train clips (the train-vs-test gap). The inputs are
    the ones :func:`toontalker_bench.runs.plan_run` checked (tasks the method can do, known metric names, a resolved
    device); they are not checked again here."""
    from ..data.version import dataset_version

    root, out_dir = Path(dataset_dir), Path(out_dir)
    version = dataset_version(root)
    pairs = load_pairs(root, tasks, split)
    frames = ProtocolFrames(root, clip_table(root), method.size)
    # every protocol source identity, whichever tasks run, so a task's FID reference does not depend on the others
    sources = source_identities(root, split)
    rank, world = _rank_world()
    method.to(device).eval()
    t0 = time.perf_counter()
    results: dict[str, dict[str, MetricValue]] = {}
    rows: list[dict[str, Any]] = []
    for task in tasks:
        src_dom, drv_dom = TASKS[task]
        tp = pairs[pairs["task"] == task]
        if ep.max_pairs:
            tp = tp.head(ep.max_pairs)
        names = task_metrics(task, ep)
        ev = Evaluator.from_params(names, ep, str(device), motion_dataset=str(root))
        if rank == 0 and needing("reference", names):
            ev.set_reference(frames.reference(src_dom, ep.fid_reference_frames, sources))
        local_rows, samples = [], []
        for p in animate_pairs(method, frames, tp, (src_dom, drv_dom), device, max_frames=ep.max_frames,
                               desc=f"{method.name} {task}", shard=(rank, world)):
            info = {"task": task, "pair_id": p.row.pair_id, "source_clip": p.row.source_clip,
                    "driving_clip": p.row.driving_clip, "n_frames": p.n_frames}
            if p.output is None:
                local_rows.append({**info, "unavailable": p.unavailable})
                continue
            generated = to_uint8(p.output)
            pair = ev.pair(generated, p.driving, p.source, p.row.pair_id,
                           full={"driving": p.driving_full, "source": p.source_full})
            values = ev.evaluate_pair(pair)
            local_rows.append({**info, **{m: v.to_dict() for m, v in values.items()}})
            if len(samples) < ep.samples:
                samples.append((p.row.pair_id, p.source, p.driving, generated))
        gathered = [r for part in _gather(local_rows, world) for r in part]
        shards = _gather(ev, world)
        samples = sorted((x for part in _gather(samples, world) for x in part), key=lambda x: x[0])[:ep.samples]
        if rank != 0:
            continue
        for other in shards[1:]:
            ev.merge(other)
        gathered.sort(key=lambda r: r["pair_id"])
        values = ev.compute()
        unavailable = [r for r in gathered if "unavailable" in r]
        for v in values.values():
            if unavailable:
                v.extra["pairs_unavailable"] = len(unavailable)
            annotate(v, task, ep.validation, version, method.size)
        results[task] = values
        rows.extend({**{k: r[k] for k in ("task", "pair_id", "source_clip", "driving_clip", "n_frames")},
                     **{m: (r[m]["value"] if m in r else None) for m in names},
                     "unavailable": r.get("unavailable", "")} for r in gathered)
        if samples:
            _write_samples(out_dir / "samples", task, [x[1:] for x in samples])
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(rows)
    if rank == 0:
        _write_results(out_dir, method, root, ep, results, table, seconds,
                       int(table["n_frames"].sum()) if len(table) else 0, split)
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


def protocol_version(dataset_dir: Path) -> int:
    """The protocol's version as its build recorded it (1 for datasets built before versions were recorded)."""
    path = dataset_dir / "protocol" / "protocol.json"
    return int(json.loads(path.read_text())["version"]) if path.is_file() else 1


def _write_results(out_dir: Path, method: Method, root: Path, ep: EvalParams,
                   results: dict[str, dict[str, MetricValue]], table: pd.DataFrame, seconds: float,
                   n_frames: int, split: str = "test") -> None:
    write_json(out_dir / "metrics.json", {t: {m: _finite(v.value) for m, v in ms.items()} for t, ms in results.items()})
    write_json(out_dir / "metrics_detail.json", {
        "method": method.name, "size": method.size, "analysis_size": ep.analysis_size,
        "face_stride": ep.face_stride, "protocol_version": protocol_version(root), "split": split,
        "seconds": round(seconds, 3),
        "frames_per_s": round(n_frames / max(seconds, 1e-9), 3),
        "tasks": {t: {m: v.to_dict() for m, v in ms.items()} for t, ms in results.items()}})
    write_text(out_dir / "pairs.csv", table.to_csv(index=False))
    for task, ms in results.items():
        for m, v in ms.items():
            if v.value is None:
                log.warning("%s %s: %s not computed: %s", method.name, task, m, v.reason)
