"""Evaluation metrics: FID/KID, identity similarity, 3DMM expression/pose distances, reconstruction and keypoints.

Every metric is a torchmetrics-style object (``update(pair)`` / ``compute()`` / ``reset()``) registered in
:data:`METRICS`; every result is a :class:`MetricValue` that carries its backend, and a value that could not be
computed is ``None`` with a ``reason``. See ``docs/metrics.md`` for definitions and reference implementations.
"""

from .base import METRICS, Metric, MetricValue
from .pair import Pair, load_frames

__all__ = ["METRICS", "Metric", "MetricValue", "Pair", "load_frames"]
