"""What the evaluation harness and the CLI call: per-pair metric values and their dataset-level aggregates."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MediaError, UserError
from .base import METRICS, Metric, MetricValue
from ..faces.analyzer import FaceAnalyzer
from .pair import Pair, load_frames

log = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "csim", "aed_exp", "apd_deg", "face_miss_rate", "l1", "psnr",
                                    "ssim", "lpips", "akd")
FACE_METRICS = frozenset({"csim", "aed_id", "aed_exp", "apd_deg", "akd", "face_miss_rate"})
NEEDS_DRIVING = frozenset({"fid", "kid", "aed_id", "aed_exp", "apd_deg", "l1", "psnr", "ssim", "lpips", "akd"})


def resolve_device(device: str = "auto") -> str:
    """The metrics' device as a string (``cpu`` / ``cuda:N``)."""
    from ..device import resolve_device as resolve

    return str(resolve(device))


def parse_metrics(names: str | Sequence[str] | None) -> list[str]:
    """``"fid,csim"`` or a list -> validated names (``aed``/``apd`` accepted as ``aed_exp``/``apd_deg``)."""
    if names is None:
        return list(DEFAULT_METRICS)
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    alias = {"aed": "aed_exp", "apd": "apd_deg"}
    out = [alias.get(n, n) for n in items]
    known = set(METRICS.names())
    bad = [n for n in out if n not in known]
    if bad:
        raise UserError(f"unknown metric {bad[0]!r}", hint=f"known: {', '.join(sorted(known))}")
    if not out:
        raise UserError("no metrics requested", hint=f"e.g. --metrics {','.join(DEFAULT_METRICS[:4])}")
    return list(dict.fromkeys(out))


class Evaluator:
    """Holds one accumulating metric object per name. :meth:`evaluate_pair` returns that pair's own values and adds the
    pair to the aggregates that :meth:`compute` returns (per-pair means averaged over pairs; FID/KID pooled)."""

    def __init__(self, metrics: str | Sequence[str] | None = None, *, device: str = "auto", batch_size: int = 50,
                 id_backend: str = "auto", motion_backend: str = "bfm3ddfa", fid_min_frames: int = 64,
                 detector: str = "retinaface", motion_dataset: str | None = None) -> None:
        self.names = parse_metrics(metrics)
        self.options: dict[str, Any] = {"device": resolve_device(device), "batch_size": batch_size,
                                        "id_backend": id_backend, "backend": motion_backend,
                                        "min_frames": fid_min_frames, "dataset_dir": motion_dataset}
        self.detector = detector
        self._analyzer: FaceAnalyzer | None = None
        self.aggregates = {n: self._make(n) for n in self.names}

    def _make(self, name: str) -> Metric:
        cls = METRICS.get(name).factory
        params = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in self.options.items() if k in params})

    @property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            self._analyzer = FaceAnalyzer(self.detector)
        return self._analyzer

    def pair(self, generated: np.ndarray, driving: np.ndarray | None = None, source: np.ndarray | None = None,
             pair_id: str = "", coefficients: dict[str, np.ndarray] | None = None) -> Pair:
        needs_faces = any(n in FACE_METRICS for n in self.names)
        return Pair(generated, driving, source, pair_id, self.analyzer if needs_faces else None,
                    dict(coefficients or {}))

    def evaluate_pair(self, pair: Pair) -> dict[str, MetricValue]:
        out = {}
        for name in self.names:
            one = self._make(name)
            one.update(pair)
            out[name] = one.compute()
            self.aggregates[name].merge(one)
        return out

    def compute(self) -> dict[str, MetricValue]:
        return {n: m.compute() for n, m in self.aggregates.items()}

    def reset(self) -> None:
        for m in self.aggregates.values():
            m.reset()


def evaluate_pair(generated: np.ndarray, driving: np.ndarray | None, source: np.ndarray | None,
                  metrics: str | Sequence[str] | None = None, **options: Any) -> dict[str, MetricValue]:
    """One pair's metrics: ``generated``/``driving`` uint8 ``(T, H, W, 3)``, ``source`` uint8 ``(H, W, 3)``."""
    ev = Evaluator(metrics, **options)
    return ev.evaluate_pair(ev.pair(generated, driving, source))


def evaluate_paths(generated: str | os.PathLike[str], driving: str | os.PathLike[str] | None = None,
                   source: str | os.PathLike[str] | None = None, metrics: str | Sequence[str] | None = None,
                   coefficients: dict[str, str] | None = None, **options: Any) -> dict[str, MetricValue]:
    """The ``evaluate metrics`` verb: frames from folders / videos, user errors for unusable inputs."""
    names = parse_metrics(metrics)
    if driving is None and (missing := [n for n in names if n in NEEDS_DRIVING]):
        raise UserError(f"metric {missing[0]} needs --driving frames")
    if source is None and "csim" in names:
        raise UserError("metric csim needs a --source image")
    gen = load_frames(generated, "generated")
    drv = load_frames(driving, "driving") if driving is not None else None
    src = load_frames(source, "source")[0] if source is not None else None
    coeffs = {k: np.load(v) for k, v in (coefficients or {}).items()}
    ev = Evaluator(names, **options)
    pair = ev.pair(gen, drv, src, Path(generated).name, coeffs)
    if any(n in FACE_METRICS for n in names):
        for which in ("generated", "driving", "source"):
            if getattr(pair, which) is not None and not pair.faces(which).has_landmarks.any():
                where = {"generated": generated, "driving": driving, "source": source}[which]
                raise MediaError(f"no face found in any {which} frame ({where})",
                                 hint="the face metrics need face crops; check the input or drop face metrics")
    return ev.evaluate_pair(pair)
