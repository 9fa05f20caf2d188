"""The interface every reenactment method implements, and the method registry.

A method is an ``nn.Module`` built from its resolved profile config (a plain dict from ``models/profiles/<name>.yaml``
plus ``--set`` overrides). The generic trainer (``toontalker_bench.train.trainer``) owns seeding, data order,
checkpoints and logging; the method owns its networks, losses and optimisers.

Tensors: images are float32 in [0, 1], shape ``(B, 3, H, W)`` with ``H == W == cfg["size"]``.

Training batch (from ``toontalker_bench.train.data``): ``{"real": DomainBatch, "cartoon": DomainBatch}`` where a domain
may be absent when the dataset has none of it, and each ``DomainBatch`` is a dict:

- ``source``, ``driving``: ``(B, 3, H, W)`` two frames of the same clip;
- ``motion_source``, ``motion_driving``: ``(B, 20)`` pose vectors (17 expression morphs in [0, 1] then yaw, pitch,
  roll in degrees) — ground truth for the demo corpus, 3DMM-fitted pseudo labels otherwise, NaN where unknown;
- ``motion_is_true``: ``(B,)`` bool, whether the pose vector is ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.domains import Domain
from ..core.registry import Registry


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float ``(..., 3, H, W)`` in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    return t.movedim(-1, -3).contiguous()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """float ``(..., 3, H, W)`` in [0, 1] -> uint8 ``(..., H, W, 3)``."""
    return (t.detach().float().clamp(0, 1).movedim(-3, -1) * 255.0).round().byte().cpu().numpy()


@dataclass(frozen=True)
class Capabilities:
    trainable: bool = True
    cross_domain: bool = True          # can animate a source of one domain with a driver of the other
    self_reenactment: bool = True
    needs_paired_pose: bool = False    # needs (frame, pose vector) pairs to train
    needs_driving_ground_truth: bool = False  # oracle baselines only
    needs_pair_context: bool = False   # animate() needs the protocol pair (clip ids, frames): the oracle-render bracket
    bracket: bool = False              # a reference point of the metric scales, never ranked as a method


@dataclass(frozen=True)
class TrainingNeeds:
    """What the harness must put in a method's training batches beyond frames (:meth:`Method.training_needs`)."""

    pose_vectors: bool = False  # a pose vector per frame: ground truth where known, 3DMM pseudo labels elsewhere
    pseudo_pose_domains: tuple[Domain, ...] = ()  # domains whose ground-truth vectors are replaced by pseudo labels


@dataclass(frozen=True)
class PairContext:
    """Which protocol pair is being animated, for methods that need it (``needs_pair_context``)."""

    dataset_dir: str
    source_clip: str
    source_frame: int
    driving_clip: str
    driving_start: int
    n_frames: int


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and ``capabilities`` and implement the three methods below."""

    name: str = "method"
    capabilities = Capabilities()

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.size = int(cfg.get("size", 64))

    # -- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        """One optimisation step (forward, backward, optimiser steps). Returns scalar logs, including ``loss``."""
        raise NotImplementedError(f"{self.name} is not trainable")

    #: checkpoint key -> attribute holding a ``torch.optim.Optimizer`` (the attribute may be absent or None, e.g. an
    #: optional discriminator). The keys are part of the checkpoint format: keep them stable.
    optimizer_slots: dict[str, str] = {}

    def optimizer_state(self) -> dict[str, Any]:
        """Optimiser state dicts, saved beside the weights so ``--resume`` continues exactly."""
        return {key: opt.state_dict() for key, attr in self.optimizer_slots.items()
                if (opt := getattr(self, attr, None)) is not None}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        for key, attr in self.optimizer_slots.items():
            opt = getattr(self, attr, None)
            if opt is not None and key in state:
                opt.load_state_dict(state[key])

    # -- inference --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True, context: PairContext | None = None) -> torch.Tensor:
        """Animate ``source`` ``(3, H, W)`` with ``driving`` frames ``(T, 3, H, W)``; returns ``(T, 3, H, W)``.

        With ``relative=True`` the motion applied is the driving motion relative to ``driving[0]``, so
        ``driving == source`` repeated must give back (approximately) ``source``. ``context`` names the protocol
        pair; only methods whose capabilities say ``needs_pair_context`` are given it.
        """
        raise NotImplementedError

    def motion_trace(self, source: torch.Tensor, driving: torch.Tensor, domain: Domain) -> dict[str, float]:
        """How much each internal stage of the motion path changes when ``driving`` frames ``(T, 3, H, W)`` replace
        ``source`` ``(3, H, W)`` as the driver, in order from input to output (``evaluate diagnose`` reports it, to
        show where a method loses the driving motion). Empty for methods without named stages."""
        return {}

    # -- what the harness asks ---------------------------------------------------------------------------------
    def training_needs(self) -> TrainingNeeds:
        """What the harness loads for training: pose vectors when ``capabilities.needs_paired_pose``; a method whose
        profile chooses where pseudo labels replace ground truth overrides this."""
        return TrainingNeeds(pose_vectors=self.capabilities.needs_paired_pose)

    def stage_steps(self, steps: int) -> dict[str, int]:
        """Steps spent in each training stage by a run that stopped after ``steps`` steps (``train.json`` records
        it); empty for methods trained in one stage."""
        return {}

    def pose_labels(self) -> str:
        """Which pose labels the trained model learnt from (``true`` / ``pseudo`` / ``mixed``), for the run record and
        the leaderboard; empty for methods that learn no pose vectors."""
        return ""

    def variant(self) -> str:
        """What distinguishes this configuration on the leaderboard beyond method and profile (e.g. a fusion mode,
        the perceptual-loss backbone); empty by default."""
        backend = str(self.cfg.get("reconstruction_backend", ""))
        return "; ".join(t for t in (backend.split("(")[0], *self.trainer_tags()) if t)

    def trainer_tags(self) -> list[str]:
        """How the generic trainer departed from its defaults, as variant tags: :meth:`precision`, and
        ``pairs=<how>`` for a ``train.pair_sampling`` other than ``random``."""
        pairs = str(dict(self.cfg.get("train") or {}).get("pair_sampling", "random"))
        return [t for t in (self.precision(), "" if pairs == "random" else f"pairs={pairs}") if t]

    def precision(self) -> str:
        """Where training left float32, for the variant (so a row says how it was trained): ``bf16-steps`` (the
        whole step under bfloat16 autocast, ``train.amp_cpu``; CUDA runs always are, ``train.amp``), ``bf16-vgg``
        (only the VGG loss network, ``loss.perceptual.bf16``); empty in float32."""
        if dict(self.cfg.get("train") or {}).get("amp_cpu"):
            return "bf16-steps"
        backend = str(self.cfg.get("reconstruction_backend", ""))
        return "bf16-vgg" if backend.endswith(", bf16)") else ""

    # -- checkpoints ------------------------------------------------------------------------------------------
    def load_release_checkpoint(self, path: str, trust: bool = False) -> list[str]:
        """Load an official third-party checkpoint (``.pth``) with strict name/shape checking.

        Returns the list of release keys that could not be mapped (with reasons). Raises CheckpointError on
        mismatch. Methods without a public release leave this unimplemented.
        """
        from ..core.errors import CheckpointError

        raise CheckpointError(f"method {self.name!r} has no official release checkpoint format",
                              hint="pass a checkpoint saved by toontalker-bench (.safetensors)")


METHODS: Registry[type[Method]] = Registry(
    "method",
    modules=(
        "toontalker_bench.models.baselines",
        "toontalker_bench.models.toontalker",
        "toontalker_bench.models.fomm",
        "toontalker_bench.models.animeceleb",
    ),
    entry_point_group="toontalker_bench.methods",
)
