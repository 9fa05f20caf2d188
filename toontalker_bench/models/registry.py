"""Method profiles: ``models/profiles/<method>.yaml`` with top-level keys ``tiny`` and ``paper``.

A profile is a plain dict handed to the method's constructor (``size`` plus whatever the method reads) and, under the
``train`` key, the generic trainer's settings (:class:`TrainConfig`).
``--set key=value`` overrides may only change keys the profile already has, so a typo fails loudly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..core.config import deep_merge, from_dict, parse_overrides
from ..core.errors import ConfigError
from .base import METHODS, Method

PROFILE_DIR = Path(__file__).parent / "profiles"
#: ``train.pair_sampling``: how a training pair's driving frame is drawn (see :mod:`toontalker_bench.train.data`)
PAIR_SAMPLING = ("random", "motion", "mixed")


@dataclass
class TrainConfig:
    """The ``train:`` section of a method profile."""

    steps: int = 1000
    batch_size: int = 8  # pairs per domain in one optimisation step, over all processes
    grad_accum: int = 1
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 500
    log_every: int = 10
    amp: bool = True  # bfloat16 autocast on CUDA
    amp_cpu: bool = False  # bfloat16 autocast on CPU too: fast with AMX (Sapphire Rapids+), slow without native bf16
    tensorboard: bool = True
    max_frames_per_clip: int = 0  # 0 = every frame of every train clip is held in memory
    pair_sampling: str = "random"  # one of PAIR_SAMPLING; any but random shows in the variant (pairs=motion)


def train_config(cfg: dict[str, Any]) -> TrainConfig:
    tc = from_dict(TrainConfig, cfg.get("train"), "train.")
    for key in ("steps", "batch_size", "grad_accum", "checkpoint_every", "sample_every", "log_every"):
        if getattr(tc, key) < (0 if key == "steps" else 1):
            raise ConfigError(f"train.{key} must be positive, got {getattr(tc, key)}")
    if tc.pair_sampling not in PAIR_SAMPLING:
        raise ConfigError(f"unknown train.pair_sampling {tc.pair_sampling!r}",
                          hint=f"one of: {', '.join(PAIR_SAMPLING)}")
    return tc


def method_class(method: str) -> type[Method]:
    """The registered class for ``method`` (UserError naming the known ones otherwise)."""
    return METHODS.get(method).factory  # type: ignore[return-value]


def _profile_file(method: str) -> dict[str, Any]:
    cls = method_class(method)
    path = PROFILE_DIR / f"{method}.yaml"
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
    else:  # third-party methods may ship their profiles as a class attribute
        data = getattr(cls, "profiles", None) or {}
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"method {method!r} has no profiles", hint=f"add {path} with keys tiny and paper")
    return data


def profile_names(method: str) -> list[str]:
    return list(_profile_file(method))


def load_profile(method: str, profile: str = "tiny",
                 overrides: list[str] | tuple[str, ...] | dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolved config for ``method`` / ``profile`` with ``--set``-style overrides applied."""
    data = _profile_file(method)
    if profile not in data:
        raise ConfigError(f"unknown profile {profile!r} for method {method!r}",
                          hint=f"known profiles: {', '.join(data)}")
    cfg = dict(data[profile] or {})
    over = parse_overrides(list(overrides)) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
    _check_known(_with_trainer_defaults(cfg), over, method, profile, "")
    cfg = deep_merge(cfg, over)
    cfg.setdefault("size", 64)
    return cfg


def _with_trainer_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` plus every trainer key (``train.*``) a profile may leave at its default, for override checking."""
    defaults = {f.name: None for f in dataclasses.fields(TrainConfig)}
    return {**cfg, "train": {**defaults, **(cfg.get("train") or {})}}


def _check_known(base: dict[str, Any], over: dict[str, Any], method: str, profile: str, where: str) -> None:
    for key, value in over.items():
        if key not in base:
            known = ", ".join(sorted(where + k for k in base)) or "none"
            raise ConfigError(f"unknown key {where + key!r} in profile {method}/{profile}", hint=f"known: {known}")
        if isinstance(value, dict) and isinstance(base[key], dict):
            _check_known(base[key], value, method, profile, f"{where}{key}.")


def build_method(method: str, profile: str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                 cfg: dict[str, Any] | None = None, checkpoint: str | Path | None = None, trust: bool = False,
                 default_profile: str = "tiny") -> Method:
    """The one way to make a method: its registered class, its config and, from ``checkpoint``, its weights.

    The config is ``cfg`` when given; else ``profile`` with ``overrides``; else (no profile named) the config saved
    in a toontalker-bench checkpoint, falling back to ``default_profile``. Release ``.pth`` files go to the
    method's own loader (``trust`` allows full pickles).
    """
    from .checkpoint import load_checkpoint, saved_config

    if cfg is None:
        saved = saved_config(checkpoint, method) if checkpoint and profile is None and not overrides else None
        cfg = saved if saved is not None else load_profile(method, profile or default_profile, overrides)
    model = method_class(method)(cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, trust=trust)
    return model
