"""Result type, metric base class and the shared helpers every metric module uses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..core.registry import Registry

if TYPE_CHECKING:
    from .pair import Pair

Direction = Literal["lower", "higher"]


@dataclass
class MetricValue:
    """One computed metric. ``value`` is None when the metric could not be computed; ``reason`` then says why."""

    name: str
    value: float | None
    backend: str
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            d["value"] = None
        return d


class Metric:
    """torchmetrics-style accumulator over evaluation pairs: ``update(pair)`` per pair, ``compute()``, ``reset()``.

    Per-pair metrics average per video (pair) first and then over videos, so a long video does not outweigh a short
    one (the StyleHEAT / PIRenderer convention).
    """

    name: str = "metric"
    direction: Direction = "lower"
    backend: str = ""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._per_video: list[float] = []
        self._n_frames = 0

    def update(self, pair: Pair) -> None:
        raise NotImplementedError

    def compute(self) -> MetricValue:
        return video_mean(self.name, self._per_video, self.backend, self._n_frames)

    def merge(self, other: Metric) -> None:
        """Add another instance's accumulated state (lists are concatenated, counts added, unset fields taken)."""
        for key, value in vars(other).items():
            if not key.startswith("_"):
                continue
            mine = getattr(self, key, None)
            if isinstance(value, list):
                mine.extend(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                setattr(self, key, mine + value)
            elif mine is None:
                setattr(self, key, value)
        self.backend = other.backend or self.backend


def video_mean(name: str, per_video: list[float], backend: str, n_frames: int,
               extra: dict[str, Any] | None = None, reason: str = "no pair had a usable frame") -> MetricValue:
    """Mean over videos of per-video means; None with ``reason`` when nothing was measured."""
    extra = dict(extra or {})
    extra["n_videos"] = len(per_video)
    if not per_video:
        return MetricValue(name, None, backend, 0, extra, reason)
    return MetricValue(name, float(sum(per_video) / len(per_video)), backend, n_frames, extra)


METRICS: Registry[type[Metric]] = Registry(
    "metric",
    modules=(
        "toontalker_bench.metrics.fid",
        "toontalker_bench.metrics.identity",
        "toontalker_bench.metrics.motion",
        "toontalker_bench.metrics.reconstruction",
        "toontalker_bench.metrics.keypoints",
    ),
    entry_point_group="toontalker_bench.metrics",
)
