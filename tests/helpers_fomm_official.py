"""Seeded FOMM weights and frames, shared by the official-equivalence test and by the (uncommitted) script that ran the
official modules (AliaksandrSiarohin/first-order-model) to produce ``tests/fixtures/fomm_official_outputs.safetensors``.

Each tensor comes from its own ``torch.Generator`` seeded by a hash of ``(name, shape)`` (the official state-dict
names, which are ours), so the weights do not depend on module construction order. Scales follow PyTorch's default
initialisation (convolutions uniform in +-1/sqrt(fan_in)), BatchNorm statistics and affine parameters are moved away
from their defaults, and the Jacobian head stays near its identity initialisation.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F


def _generator(*parts: object) -> torch.Generator:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def seeded_tensor(name: str, like: torch.Tensor) -> torch.Tensor:
    shape = tuple(like.shape)
    if not like.dtype.is_floating_point:  # num_batches_tracked
        return like.clone()
    g = _generator("fomm", name, shape)
    u = torch.rand(shape, generator=g) * 2 - 1
    if name.endswith("running_var"):
        return 1 + 0.25 * (u + 1)
    if name.endswith("running_mean") or (".norm" in name and name.endswith(".bias")):
        return 0.1 * u
    if ".norm" in name and name.endswith(".weight"):
        return 1 + 0.1 * u
    if name.startswith("jacobian."):
        return (torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(shape[0] // 4) + 0.01 * u if len(shape) == 1
                else 0.01 * u / math.sqrt(math.prod(shape[1:])))
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else None
    if fan_in is None:  # a convolution bias: the default bound uses the weight's fan-in, ~ same scale
        return 0.05 * u
    return u / math.sqrt(fan_in)


def seeded_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Seeded values for every entry of ``module.state_dict()`` (names relative to ``module``)."""
    return {k: seeded_tensor(k, v) for k, v in module.state_dict().items()}


def seeded_frames(n: int, size: int) -> torch.Tensor:
    """``(n, 3, size, size)`` smooth frames in [0, 1] (uniform 8 x 8 noise, bilinearly upsampled)."""
    low = torch.rand(n, 3, 8, 8, generator=_generator("frames", n, size))
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
