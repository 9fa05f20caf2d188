"""Seeded stand-ins for released ToonTalker weights and inputs, shared by the release-equivalence test and by the
(uncommitted) script that ran the public release to produce ``tests/fixtures/toontalker_release_outputs.safetensors``.

Every tensor is drawn from its own ``torch.Generator`` seeded by a hash of ``(tag, release name, shape)``, so the
values depend neither on the order in which a model creates its modules nor on which model (ours or the release's)
receives them. The scale of each tensor follows how the release initialises that kind of layer (equalised-learning-
rate weights ~ N(0, 1), plain ``nn.Linear`` / ``nn.Conv2d`` / attention weights ~ N(0, 1/fan_in), LayerNorm gains
and modulation biases around 1, other biases small; flow heads scaled down, see :data:`FLOW_SCALE`), so activations
stay in a realistic range and the output image lies mostly in [-1, 1].
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

KEYS_FIXTURE = Path(__file__).parent / "fixtures" / "toontalker_release_keys.json"

#: release parameters of plain torch layers (default PyTorch initialisation, no run-time weight scaling)
_PLAIN = (".in_proj_weight", ".out_proj.weight", ".linear1.weight", ".linear2.weight", ".scale2.weight",
          ".shift2.weight", "dec.latlayer1.weight")


#: flow-head weights at 0.1 x N(0, 1): offsets of a few per cent of the image, as trained models predict. With
#: N(0, 1) the random flows are so large that the warp amplifies float32 rounding ~1e4-fold by 256 px (the release in
#: float32 and in float64 then differ by 0.11), and no float32 comparison could hold 1e-4.
FLOW_SCALE = 0.1
#: RGB-head weights at 0.3 x N(0, 1), so the image lies mostly in [-1, 1] (with N(0, 1) about half of it is outside)
RGB_SCALE = 0.3


def release_shapes() -> dict[str, tuple[int, ...]]:
    """Release generator key -> shape (352 entries), read from the recorded key list."""
    return {k: tuple(v) for k, v in json.loads(KEYS_FIXTURE.read_text())["generator"].items()}


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_tensor(tag: str, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(_seed(tag, name, shape))
    x = torch.randn(shape, generator=g, dtype=torch.float32)
    if name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "modulation.bias")):
        return 1.0 + 0.1 * x
    if name.endswith(("bias", "in_proj_bias")):
        return 0.1 * x
    if name.endswith(_PLAIN):
        return x / math.sqrt(math.prod(shape[1:]))
    if ".to_flows." in name and name.endswith(".conv.weight"):
        return FLOW_SCALE * x
    if ".to_rgbs." in name and name.endswith(".conv.0.weight"):
        return RGB_SCALE * x
    return x


def seeded_release_generator(tag: str) -> dict[str, torch.Tensor]:
    """A release-named generator state dict (``gen`` / ``gen_real`` layout), without the constant FIR kernels and
    the unused noise strengths (the release model keeps its own; our loader needs neither)."""
    return {k: seeded_tensor(tag, k, s) for k, s in release_shapes().items()
            if not k.endswith((".kernel", ".noise.weight"))}


def seeded_images(tag: str, n: int, size: int = 256) -> torch.Tensor:
    """``(n, 3, size, size)`` smooth images in [-1, 1] (uniform 16 x 16 noise, bilinearly upsampled), on multiples of
    2^-10 so that the toolkit's [0, 1] -> [-1, 1] input mapping reproduces them exactly."""
    g = torch.Generator().manual_seed(_seed("images", tag, n, size))
    low = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
    # float32 upsampling rounds differently with the number of intra-op threads, and a few pixels then round to
    # the next 2^-10 step; the fixture's images were made with 2 threads, so they are made with 2 threads here
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        img = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    finally:
        torch.set_num_threads(threads)
    return torch.round(img * 1024) / 1024


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], exact for :func:`seeded_images` (the inverse of the model's own input mapping)."""
    return (x + 1) / 2
