"""Loading the official ToonTalker release (``in-domain*.pth``, ``cross-domain.pth``) into :class:`~.model.ToonTalker`,
with every name and shape checked against our modules."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from ...core.domains import DOMAINS
from ...core.errors import CheckpointError
from ..checkpoint import load_torch_file
from .networks import DomainGenerator

log = logging.getLogger(__name__)


RELEASE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("enc.", "app_enc."),
    ("enc2.", "motion_enc."),
    ("dec.direction.", "memory."),
    ("dec.transformerlayer_0.", "t_src."),
    ("dec.transformerlayer_1.", "t_drv."),
    ("dec.transformerlayer.", "back.0."),
    ("dec.transformerlayer_t.", "back.1."),
    ("dec.transformerlayer_f.", "back.2."),
    ("dec.latlayer1.", "lateral."),
    ("dec.mlp.", "to_codes."),
    ("dec.input.input", "synth.const"),
    ("dec.", "synth."),
)
"""Release generator key prefix -> ours (relative to a :class:`DomainGenerator`); the first match applies."""

RELEASE_PARTS: tuple[tuple[str, str], ...] = (
    (".multihead_attn.", ".cross_attn."),
    (".linear1.", ".ff1."),
    (".linear2.", ".ff2."),
)
"""Inside the transformer layers: release part name -> ours."""

_NOISE = re.compile(r"\.noise\.weight$")
_KERNEL = re.compile(r"\.kernel$")


def release_to_ours(key: str) -> str:
    """Our parameter name (relative to a :class:`DomainGenerator`) for a release generator key."""
    for old, new in RELEASE_PREFIXES:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    for old, new in RELEASE_PARTS:
        key = key.replace(old, new)
    return key


def _load_generator(gen: DomainGenerator, release: dict[str, torch.Tensor], top: str, where: str,
                    path: str) -> list[str]:
    """Copy a release generator state dict into ``gen``; returns skipped keys with reasons; raises on mismatch."""
    params = dict(gen.named_parameters())
    buffers = dict(gen.named_buffers())
    skipped: list[str] = []
    problems: list[str] = []
    filled: set[str] = set()
    new_values: dict[str, torch.Tensor] = {}
    for key, value in release.items():
        ours = release_to_ours(key)
        if _NOISE.search(key):
            skipped.append(f"{top}.{key}: noise strength; the release never injects noise, so it has no effect")
            continue
        if _KERNEL.search(key):
            ref = buffers.get(ours)
            if ref is None or ref.shape != value.shape or not torch.allclose(ref, value.float()):
                problems.append(f"{top}.{key}: FIR kernel differs from ours ({where}.{ours})")
            else:
                skipped.append(f"{top}.{key}: constant FIR kernel, equal to ours (not stored)")
            continue
        if ours not in params:
            problems.append(f"{top}.{key}: no parameter {where}.{ours}")
        elif tuple(params[ours].shape) != tuple(value.shape):
            problems.append(f"{top}.{key}: shape {tuple(value.shape)} != {where}.{ours} {tuple(params[ours].shape)}")
        else:
            new_values[ours] = value
            filled.add(ours)
    problems += [f"{where}.{k}: missing from the release" for k in params if k not in filled]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path} does not match the ToonTalker architecture: {'; '.join(problems[:3])}{more}",
                              hint="use --profile paper (256 px, style_dim 512, 20 tokens) for released weights")
    with torch.no_grad():
        for k, v in new_values.items():
            params[k].copy_(v.to(params[k].dtype))
    return skipped


def load_release(gens: nn.ModuleDict, path: str, trust: bool = False, warn_cross: bool = False) -> list[str]:
    """Read a release file (``torch.load(weights_only=True)`` unless ``trust``: tensors, dicts, lists, tuples, numbers,
    strings, ``torch.Size`` and optimiser state dicts load; any other pickled object — an ``argparse.Namespace`` of
    training arguments, numpy values, paths, modules — needs ``trust``, i.e. ``--trust-checkpoint``) and load its
    generators into ``gens`` (:func:`load_release_generators`)."""
    return load_release_generators(gens, load_torch_file(path, trust), path, warn_cross)


def load_release_generators(gens: nn.ModuleDict, state: Any, path: str, warn_cross: bool = False) -> list[str]:
    """Load ``in-domain*.pt(h)`` (``{"gen": ...}``, loaded into both domains) or ``cross-domain.pt(h)``
    (``{"gen": cartoon, "gen_real": real}``) into ``gens`` with strict name/shape checking via
    :data:`RELEASE_PREFIXES` and :data:`RELEASE_PARTS`. Returns the release keys not loaded, each as
    ``"key: reason"``. ``warn_cross``: say that the cross-domain model will not animate as the release's demo does
    (see the method's ``cross_domain_transformer``)."""
    if not isinstance(state, dict) or not isinstance(state.get("gen"), dict):
        raise CheckpointError(f"{path} is not a ToonTalker release checkpoint (no 'gen' state dict)",
                              hint="pass in-domain*.pth or cross-domain.pth from OpenTalker/ToonTalker")
    targets = {"gen": ["cartoon"], "gen_real": ["real"]} if "gen_real" in state else {"gen": list(DOMAINS)}
    if "gen_real" not in state:
        log.warning("%s holds one generator (in-domain model): loading it into both domains", path)
    elif warn_cross:
        log.warning("%s is the release's cross-domain model; with cross_domain_transformer: own, animation across "
                    "domains will not match the release's demo (set cross_domain_transformer=release for that)", path)
    skipped = [f"{k}: not a generator (training state), unused at inference" for k in state if k not in targets]
    for top, domains in targets.items():
        for dom in domains:
            skipped += _load_generator(gens[dom], state[top], top, f"gens.{dom}", path)
    return sorted(set(skipped))
