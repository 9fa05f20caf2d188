"""Evaluation metrics: FID/KID, identity similarity, 3DMM expression/pose distances, reconstruction and keypoints.

Every metric is a torchmetrics-style object (``update(pair)`` / ``compute()`` / ``reset()``) that declares its name,
direction, needs, kind, defaults and state in its class and is registered in :data:`METRICS` by ``@register``; every
result is a :class:`MetricValue` that carries its backend, and a value that could not be computed is ``None`` with a
``reason``. See ``docs/metrics.md`` for definitions and reference implementations.
"""

from .base import METRICS, Metric, MetricOptions, MetricValue, default_metrics, metric_class, metric_classes, register
from .pair import Pair, load_frames

__all__ = ["METRICS", "Metric", "MetricOptions", "MetricValue", "Pair", "default_metrics", "load_frames",
           "metric_class", "metric_classes", "register"]
