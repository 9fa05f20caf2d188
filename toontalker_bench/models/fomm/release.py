"""Loading the official FOMM checkpoint (``vox-cpk.pth.tar``) into :class:`~.model.FOMM`.

Sub-module and parameter names follow the official implementation, so the release loads through an identity name
mapping (:data:`RELEASE_NAME_MAP`) with every name and shape checked.
"""

from __future__ import annotations

import torch
from torch import nn

from ...core.errors import CheckpointError
from ..checkpoint import load_torch_file

#: official top-level checkpoint key -> our sub-module; parameter names below it are identical.
RELEASE_NAME_MAP: dict[str, str] = {"generator": "generator", "kp_detector": "kp_detector"}
#: release keys we deliberately do not load (reason shown to the user).
RELEASE_IGNORED: dict[str, str] = {
    "discriminator": "not needed for animation",
    "optimizer_generator": "optimiser state is not transferred",
    "optimizer_kp_detector": "optimiser state is not transferred",
    "optimizer_discriminator": "optimiser state is not transferred",
    "epoch": "training bookkeeping",
}


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, path: str) -> list[str]:
    """Copy ``state`` into ``module``; every name and shape must match, except BatchNorm ``num_batches_tracked``,
    which old releases may lack (left at its current value, reported)."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ours]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(ours[k].shape)}" for k in ours
             if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise CheckpointError(f"{path} [{prefix}] does not match this FOMM configuration — {'; '.join(parts)}",
                              hint="use the profile the release was trained with (paper = vox-256)")
    defaulted = [k for k in ours if k not in state]
    module.load_state_dict({**ours, **state}, strict=True)
    return [f"{prefix}.{k}: absent in release, kept default" for k in defaulted]


def load_release(model: nn.Module, path: str, trust: bool = False) -> list[str]:
    """Copy the release's ``generator`` and ``kp_detector`` into ``model``; returns notes on what was not loaded."""
    ckpt = load_torch_file(path, trust)
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in RELEASE_NAME_MAP):
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a FOMM release checkpoint (found keys {found})",
                              hint="expected top-level keys 'generator' and 'kp_detector', as in vox-cpk.pth.tar")
    notes = [f"{k}: {RELEASE_IGNORED.get(k, 'unknown key, not loaded')}" for k in ckpt if k not in RELEASE_NAME_MAP]
    for release_key, attr in RELEASE_NAME_MAP.items():
        notes += _load_strict(getattr(model, attr), ckpt[release_key], release_key, path)
    return notes
