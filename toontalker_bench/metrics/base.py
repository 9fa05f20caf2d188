"""Result type, metric base class and the shared helpers every metric module uses."""

from __future__ import annotations

import copy
import math
import pkgutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar

from ..core.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from .pair import Pair

Direction = Literal["lower", "higher"]
Need = Literal["driving", "source", "faces", "reference"]
Kind = Literal["pair", "distribution"]
TaskKind = Literal["self", "cross"]
Validation = Literal["sensitivity", "pose", "expression", "identity"]
Reduce = Literal["cat", "sum", "first"]


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


@dataclass(frozen=True)
class MetricOptions:
    """The evaluation settings a metric may be built from (:meth:`Metric.from_options`)."""

    device: str = "cpu"
    batch_size: int = 16
    id_backend: str = "auto"
    motion_backend: str = "bfm3ddfa"
    fid_min_frames: int = 64
    dataset_dir: str | None = None  # the built dataset being evaluated (a motion backend fitted on its train split)


class Metric:
    """torchmetrics-style accumulator over evaluation pairs: ``update(pair)`` per pair, ``compute()``, ``reset()``.

    A metric declares itself once, in class attributes that the evaluator, the CLI, the verdicts, the sensitivity
    suite and the leaderboard read (see ``docs/metrics.md``), and its accumulated state with :meth:`add_state`, from
    which :meth:`reset` and :meth:`merge` follow. Per-pair metrics average per video (pair) first and then over
    videos, so a long video does not outweigh a short one (the StyleHEAT / PIRenderer convention).
    """

    name: ClassVar[str] = ""
    direction: ClassVar[Direction] = "lower"
    #: what ``update`` reads besides the generated frames: ``driving`` / ``source`` frames, ``faces`` (the face
    #: analyser's tracks), ``reference`` (a set of real frames, :meth:`set_reference`)
    needs: ClassVar[frozenset[Need]] = frozenset()
    #: ``pair``: a value per pair, averaged; ``distribution``: every pair's frames pooled, one value per evaluation
    kind: ClassVar[Kind] = "pair"
    #: the task kinds whose default metric list (``eval.self_metrics`` / ``eval.cross_metrics``) holds the metric
    default_for: ClassVar[frozenset[TaskKind]] = frozenset()
    #: position in the default lists and on the leaderboard (lower first; ties by name)
    order: ClassVar[int] = 1000
    aliases: ClassVar[tuple[str, ...]] = ()  # other names ``--metrics`` accepts
    #: a headline metric leads the leaderboard's columns (in ``order``); the others follow by name
    headline: ClassVar[bool] = False
    #: what the metric validation report must show before the board presents the metric unmarked: None: nothing
    #: (it compares frames directly); ``sensitivity``: its sensitivity-suite verdicts; ``pose`` / ``expression`` /
    #: ``identity``: those and the report's figure of that name
    validation: ClassVar[Validation | None] = "sensitivity"
    #: sensitivity suite (``eval/sensitivity.py``): the injected error the metric must grow with (None: not in the
    #: suite) and the errors it must not answer to
    answers_to: ClassVar[str | None] = None
    ignores: ClassVar[tuple[str, ...]] = ()
    backend: str = ""

    def __init__(self) -> None:
        self._states: dict[str, tuple[Any, Reduce]] = {}
        self.add_state("_per_video", [], "cat")
        self.add_state("_n_frames", 0, "sum")

    @classmethod
    def from_options(cls, options: MetricOptions) -> Self:
        """The metric as the evaluation settings configure it (a metric with settings overrides this)."""
        return cls()

    def add_state(self, name: str, default: Any, reduce: Reduce) -> None:  # noqa: ANN401 - any state value
        """Declare accumulated state ``name``: :meth:`reset` sets a copy of ``default``; :meth:`merge` combines two
        instances' values: ``cat`` (lists, concatenated), ``sum`` (numbers, added), ``first`` (this instance's value
        unless it is None)."""
        self._states[name] = (default, reduce)
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        for name, (default, _) in self._states.items():
            setattr(self, name, copy.deepcopy(default))

    def update(self, pair: Pair) -> None:
        raise NotImplementedError

    def set_reference(self, frames: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        """The real frames (uint8 ``(N, H, W, 3)``) or their features a metric that needs ``reference`` compares to."""
        raise TypeError(f"metric {self.name} declares no reference set")

    def compute(self) -> MetricValue:
        return video_mean(self.name, self._per_video, self.backend, self._n_frames)

    def merge(self, other: Metric) -> None:
        """Add another instance's accumulated state (another pair's, another rank's), each by its declared reduce."""
        for name, (_, reduce) in self._states.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if reduce == "cat":
                mine.extend(theirs)
            elif reduce == "sum":
                setattr(self, name, mine + theirs)
            elif mine is None:
                setattr(self, name, theirs)
        self.backend = other.backend or self.backend


def video_mean(name: str, per_video: list[float], backend: str, n_frames: int,
               extra: dict[str, Any] | None = None, reason: str = "no pair had a usable frame") -> MetricValue:
    """Mean over videos of per-video means; None with ``reason`` when nothing was measured."""
    extra = dict(extra or {})
    extra["n_videos"] = len(per_video)
    if not per_video:
        return MetricValue(name, None, backend, 0, extra, reason)
    return MetricValue(name, float(sum(per_video) / len(per_video)), backend, n_frames, extra)


#: every module of this package is imported on first lookup, so a new metric module registers itself
METRICS: Registry[type[Metric]] = Registry(
    "metric",
    modules=tuple(f"{__package__}.{m.name}" for m in pkgutil.iter_modules([str(Path(__file__).parent)])),
    entry_point_group="toontalker_bench.metrics",
)


M = TypeVar("M", bound=type[Metric])


def register(cls: M) -> M:
    """Class decorator: add a :class:`Metric` to :data:`METRICS` under its declared ``name``."""
    if not cls.name:
        raise TypeError(f"metric class {cls.__qualname__} declares no name")
    return METRICS.register(cls.name)(cls)


def metric_class(name: str) -> type[Metric]:
    """The registered class of ``name`` (a :class:`UserError` naming the known ones otherwise)."""
    return METRICS.get(name).factory  # type: ignore[return-value]


def metric_classes() -> list[type[Metric]]:
    """Every registered metric, in declared order (the default metric lists' order)."""
    return sorted((e.factory for e in METRICS), key=lambda c: (c.order, c.name))  # type: ignore[attr-defined]


def default_metrics(*task_kinds: TaskKind) -> list[str]:
    """The metrics declared default for any of ``task_kinds`` (all kinds when none is given), in declared order."""
    kinds = set(task_kinds or ("self", "cross"))
    return [c.name for c in metric_classes() if kinds & c.default_for]

