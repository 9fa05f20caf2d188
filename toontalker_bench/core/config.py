"""Typed configuration: ``params.yaml`` (+ method profile YAMLs) -> dataclasses, with ``--set key=value`` overrides.

Every section is a dataclass; loading rejects unknown keys naming the full dotted key, and coerces/validates types so
``--set tubes.detect_every=abc`` fails with one clear line. A data stage declares the keys it reads (its ``READS``,
the same list dvc.yaml gives as the stage's ``params``, tested) and works on a :func:`view` that holds only those
and the run-control keys, so reading anything else fails at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_PARAMS = "params.yaml"


# --------------------------------------------------------------------------------------------------- sections
@dataclass
class SynthParams:
    """Built-in offline demo corpus (``data synth``)."""

    out_dir: str = "data/synth"
    manifest: str = "manifests/demo.csv"  # written by the synth run (<out_dir>/demo.csv when out_dir is not the default)
    cartoon_videos: int = 7
    real_videos: int = 4
    cartoon_identities: int = 24
    width: int = 640
    height: int = 360
    fps: float = 25.0
    shots_per_video: int = 4
    shot_seconds: tuple[float, float] = (3.2, 4.6)
    no_face_shot_prob: float = 0.1  # fraction of shots without a face (at most one per video)
    include_carphone: bool = True  # also ship the unmodified carphone clip (NaN motion)


@dataclass
class ScrapeParams:
    """Stage 1 (``data scrape``): manifests -> data/raw."""

    out_dir: str = "data/raw"
    manifests: list[str] = field(default_factory=lambda: ["manifests/demo.csv"])
    max_height: int = 720  # best mp4 at most this tall
    retries: int = 3  # extra attempts per source, with exponential backoff
    backoff_s: float = 2.0  # first pause; doubles per attempt
    timeout_s: float = 900.0  # wall-clock budget per source, all attempts included
    socket_timeout_s: float = 30.0  # yt-dlp socket_timeout
    rate_limit: str | None = None  # bytes/s, e.g. "2M"
    proxy: str | None = None
    cookies: str | None = None  # Netscape cookies.txt
    enable_file_urls: bool = True  # allow file:// sources
    crf: int = 18  # H.264 quality of re-encoded segments
    min_success_fraction: float = 0.5  # the stage fails below this fraction of usable sources


@dataclass
class CutsParams:
    """Shot cuts (PySceneDetect), found in the tubes stage's decoding pass (written to its ``cuts.parquet``)."""

    detector: str = "content"  # content | adaptive
    threshold: float = 27.0  # ContentDetector threshold
    adaptive_threshold: float = 3.0  # AdaptiveDetector threshold
    min_shot_frames: int = 15  # detector min_scene_len; shorter shots are dropped and counted
    downscale_width: int = 160  # frames are analysed at about this width


@dataclass
class TubesParams:
    out_dir: str = "data/tubes"
    detect_every: int = 5
    detect_max_side: int = 320  # the detector sees frames downscaled to this longer side (speed); 0 = full size
    link_iou: float = 0.3  # a detection joins a track when its IoU with the track's last box is at least this
    max_gap: int = 1  # detection passes a track may miss before it ends (the gap is interpolated)
    iou_split: float = 0.25
    max_tube_frames: int = 1500
    min_frames: int = 64
    min_face_px: int = 48
    min_score: float = 0.5
    min_sharpness: float = 0.0  # min variance of the Laplacian on the 64 px face patch; 0 disables the blur filter
    border_margin: float = 0.15  # max fraction of the face box allowed outside the frame
    real_detector: str = "retinaface"
    cartoon_detector: str = "retinaface"
    landmarks: str = "dlib68"
    landmarks_every: int = 5  # landmark model every k frames (and on detection frames); 1 = every frame
    landmarks_between: str = "flow"  # frames between model frames: linear (interpolation) | flow (optical flow)
    chunk_seconds: float = 30.0  # sources longer than 1.5x this run as chunks of this length (parallel); 0 = never


@dataclass
class AlignParams:
    out_dir: str = "data/clips"
    increase: float = 0.4
    size: int = 256
    box_mode: str = "fixed"  # fixed | smooth
    smooth_window: int = 9
    pad: str = "constant"  # constant (black) | reflect | edge: fills the part of a crop outside the frame
    write_png: bool = False
    crf: int = 18
    chunk_seconds: float = 30.0  # a source whose tubes span more than 1.5x this runs as several jobs; 0 = never


@dataclass
class BuildParams:
    out_dir: str = "data/dataset"
    test_fraction: float = 0.3
    pairs_per_task: int = 24
    pair_frames: int = 64  # driving window length (shorter clips give their whole length)
    min_motion_deg: float = 8.0  # a driving window must turn the head this much (largest yaw/pitch/roll range)
    # cross-domain driving windows start with a closed mouth (protocol 3), or anywhere (protocol 2)
    cross_start: typing.Literal["neutral", "any"] = "neutral"
    contact_sheet_clips: int = 8
    shard_mb: int = 256  # target size of one parquet shard
    corpus_check: str = "docs/corpus-check.json"  # the card quotes this check when it read these very clips


@dataclass
class EvalParams:
    batch_size: int = 16
    fid_min_frames: int = 64
    id_backend: str = "auto"  # auto | arcface | dlib-resnet128 | sface
    motion_backend: str = "corpus-ridge"  # fitted on the dataset's train split (docs/metrics.md)
    tasks: list[str] = field(default_factory=list)  # empty = the four protocol tasks
    self_metrics: list[str] = field(default_factory=lambda: [
        "apd_rel_deg", "aed_exp_rel", "l1", "psnr", "ssim", "lpips", "akd", "csim", "apd_deg", "aed_exp",
        "face_miss_rate"])
    cross_metrics: list[str] = field(default_factory=lambda: [
        "apd_rel_deg", "aed_exp_rel", "csim", "fid", "kid", "apd_deg", "aed_exp", "face_miss_rate"])
    max_pairs: int = 0  # per task; 0 = every protocol pair
    max_frames: int = 0  # per pair; 0 = the protocol's n_frames
    fid_reference_frames: int = 2000  # target-domain test frames FID compares against (evenly sampled)
    samples: int = 4  # pairs shown in each task's grid and video
    analysis_size: int = 256  # face analysis resolution (driving/source at full clip size, generated upscaled)
    face_stride: int = 2  # face metrics on every k-th frame of a pair (pixel metrics on all)
    cache: bool = True  # keep the driving/source face analyses on disk ($TOONTALKER_HOME/features/faces)
    validation: str = "docs/metrics-validation.json"  # metrics whose validation misses its target are marked


@dataclass
class RunParams:
    runs_dir: str = "runs"
    leaderboard_dir: str = "leaderboard"
    benchmark: str = "demo"
    device: str = "auto"
    profile: str = "tiny"
    methods: list[str] = field(default_factory=lambda: [  # the DVC benchmark
        "copy-source", "oracle-driving", "toontalker", "fomm", "animeceleb"])
    overrides: list[str] = field(default_factory=list)  # profile --set values applied to every method (sweeps)


@dataclass
class Params:
    seed: int = 0
    workers: int = 0  # 0 = number of cores
    executor: str = "local"  # local | dask
    scheduler: str | None = None
    synth: SynthParams = field(default_factory=SynthParams)
    scrape: ScrapeParams = field(default_factory=ScrapeParams)
    cuts: CutsParams = field(default_factory=CutsParams)
    tubes: TubesParams = field(default_factory=TubesParams)
    align: AlignParams = field(default_factory=AlignParams)
    build: BuildParams = field(default_factory=BuildParams)
    eval: EvalParams = field(default_factory=EvalParams)
    run: RunParams = field(default_factory=RunParams)

    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


RUN_CONTROL = ("workers", "executor", "scheduler", "n_workers")  # how a stage runs, never what it outputs
BENCHMARK_SECTIONS = ("eval", "run")  # the harness's sections; every other section belongs to a dataset stage


def data_sections() -> tuple[str, ...]:
    """The params sections of the dataset stages, in pipeline order (every section but the benchmark's)."""
    return tuple(f.name for f in dataclasses.fields(Params)
                 if dataclasses.is_dataclass(f.default_factory) and f.name not in BENCHMARK_SECTIONS)


class ParamsView:
    """The part of :class:`Params` a stage declared: whole sections (``"tubes"``), single keys (``"scrape.out_dir"``)
    and top-level values (``"seed"``), plus :data:`RUN_CONTROL`. Anything else raises ``AttributeError``."""

    def __init__(self, params: Params, keys: tuple[str, ...]) -> None:
        self._params = params
        self._keys = keys
        self._partial: dict[str, set[str]] = {}
        for k in keys:
            section, _, key = k.partition(".")
            if not hasattr(params, section):
                raise ConfigError(f"stage declares unknown params key {k!r}")
            if key:
                self._partial.setdefault(section, set()).add(key)

    def __getattr__(self, name: str) -> Any:
        if name in RUN_CONTROL or name in self._keys:
            return getattr(self._params, name)
        if name in self._partial:
            return _SectionView(name, getattr(self._params, name), self._partial[name])
        raise AttributeError(f"params key {name!r} is not declared by this stage (add it to its READS and to dvc.yaml)")

    def to_dict(self) -> dict[str, Any]:
        """The declared values, for hashing a stage's recipe."""
        return {k: to_dict(getattr(self, k)) for k in sorted({k.partition(".")[0] for k in self._keys})}


class _SectionView:
    def __init__(self, name: str, section: Any, keys: set[str]) -> None:  # noqa: ANN401
        self._name, self._section, self._keys = name, section, keys

    def __getattr__(self, key: str) -> Any:
        if key in self._keys:
            return getattr(self._section, key)
        raise AttributeError(f"params key {self._name}.{key!r} is not declared by this stage "
                             "(add it to its READS and to dvc.yaml)")

    def to_dict(self) -> dict[str, Any]:
        return {k: to_dict(getattr(self._section, k)) for k in sorted(self._keys)}


def view(params: Params | ParamsView, keys: tuple[str, ...]) -> ParamsView:
    """``params`` restricted to ``keys`` (see :class:`ParamsView`)."""
    return ParamsView(params._params if isinstance(params, ParamsView) else params, keys)


# --------------------------------------------------------------------------------------------------- machinery
def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and coercing values to the declared types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        dotted = f"{where}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {dotted!r}", hint=f"valid keys here: {', '.join(sorted(names))}")
        kwargs[key] = coerce(hints[key], value, dotted)
    return cls(**kwargs)


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Coerce ``value`` to type ``tp`` (dataclass, Optional, list, tuple, dict, scalar) or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, key + ".")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key {key!r} needs {len(args)} values, got {len(value)}")
            return tuple(coerce(a, v, key) for a, v in zip(args, value))
        inner = args[0] if args else Any
        seq = [coerce(inner, v, key) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return {str(k): coerce(args[1] if args else Any, v, f"{key}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key {key!r} must be true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} must be {'an integer' if tp is int else 'a number'}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return str(value)
    return value


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=3", "c=[1,2]"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"bad --set value {item!r}", hint="use --set key=value, e.g. --set tubes.detect_every=10")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"bad --set key in {item!r}", hint="use dotted keys like train.steps=100")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key!r} conflicts with another --set")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def find_params(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``params.yaml`` in ``start`` (default: the working directory) or one of its parents, as git and
    DVC find their roots; ``None`` when there is none."""
    here = Path(start or Path.cwd()).resolve()
    return next((d / DEFAULT_PARAMS for d in (here, *here.parents) if (d / DEFAULT_PARAMS).is_file()), None)


def load_params(path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Load ``path``, or else the nearest ``params.yaml`` (:func:`find_params`), and apply ``--set`` overrides.

    Without any ``params.yaml`` the dataclass defaults are used, which equal the project's ``params.yaml``
    (``tests/test_config.py`` holds them equal); one log line says so and where it looked. Relative paths in the file
    are read from the working directory, wherever the file was found.
    """
    data: dict[str, Any] = {}
    if path is None:
        path = find_params()
        if path is None:
            log.info("no %s in %s or its parents: using the built-in defaults (equal to the project's %s)",
                        DEFAULT_PARAMS, Path.cwd(), DEFAULT_PARAMS)
    if path is not None:
        data = read_yaml(path)
    data = deep_merge(data, parse_overrides(list(overrides)))
    return from_dict(Params, data)


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (tuples as lists) suitable for YAML/JSON."""
    if isinstance(obj, ParamsView | _SectionView):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
