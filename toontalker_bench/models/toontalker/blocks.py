"""ToonTalker's network building blocks: StyleGAN2-style layers, the style encoder, the decoder's flow and fusion
layers, a discriminator.

Layer names follow the StyleGAN2 / LIA convention (``conv``, ``modulation``, ``activate``, ``to_rgbs``...), which keeps
the mapping onto released checkpoints short. Stable public API:

- layers: :class:`EqualConv2d`, :class:`EqualLinear`, :class:`FusedLeakyReLU`, :class:`Blur`, :class:`Upsample`,
  :class:`ConvLayer`, :class:`ResBlock`, :class:`ModulatedConv2d`, :class:`StyledConv`, :class:`ToRGB`,
  :class:`ToFlow`, :class:`FuseSFT`, :class:`QueryDecoderLayer`;
- networks: :class:`StyleEncoder` (image -> multi-scale features, optionally a vector), :class:`Discriminator`;
- helpers: :func:`channel_map`, :func:`make_blur_kernel`, :func:`upfirdn2d`, :func:`random_affine`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import warp

BLUR_KERNEL = (1, 3, 3, 1)


# ----------------------------------------------------------------------------------------------------- helpers
def channel_map(size: int, base: int, cap: int) -> dict[int, int]:
    """Channels per resolution 4..size: ``min(cap, base // res)`` (the paper's 512..64 for base=16384, cap=512)."""
    out: dict[int, int] = {}
    res = 4
    while res <= size:
        out[res] = max(1, min(cap, base // res))
        res *= 2
    return out


def make_blur_kernel(k: Sequence[int] = BLUR_KERNEL) -> torch.Tensor:
    """Separable FIR kernel ``outer(k, k)`` normalised to sum 1."""
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (per channel), then subsample."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def random_affine(x: torch.Tensor, max_rotation_deg: float, max_scale: float, max_shift: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` under a random similarity per image: rotation, scale ``1 ± max_scale`` and shift (in
    half-widths) drawn uniformly from torch's global generator; borders replicate."""
    n = x.shape[0]
    u = torch.rand(n, 4, device=x.device, dtype=x.dtype) * 2 - 1
    angle, scale = u[:, 0] * math.radians(max_rotation_deg), 1 + u[:, 1] * max_scale
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) * scale
    theta[:, 0, 1] = -torch.sin(angle) * scale
    theta[:, 1, 0] = torch.sin(angle) * scale
    theta[:, :, 2] = u[:, 2:] * max_shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ----------------------------------------------------------------------------------------------------- layers
class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU (slope 0.2) scaled by sqrt(2), StyleGAN2's activation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias, 0.2) * math.sqrt(2)


class Blur(nn.Module):
    """FIR low-pass filter with padding; the kernel is a constant (not stored in checkpoints)."""

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1, kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(kernel) * upsample_factor ** 2, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling."""

    def __init__(self, factor: int = 2, kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(kernel) * factor ** 2, persistent=False)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate (weights ~ N(0, 1), scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1 / math.sqrt(cin * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; optional fused leaky-ReLU activation."""

    def __init__(self, din: int, dout: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dout, din) / lr_mul)
        self.bias = nn.Parameter(torch.full((dout,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(din)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return F.leaky_relu(out + self.bias * self.lr_mul, 0.2) * math.sqrt(2)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ConvLayer(nn.Sequential):
    """[blur] -> equalised conv (stride 2 when downsampling) -> [activation]. Children are numbered like StyleGAN2's."""

    def __init__(self, cin: int, cout: int, k: int, downsample: bool = False, bias: bool = True,
                 activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (k - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, k // 2
        layers.append(EqualConv2d(cin, cout, k, stride=stride, padding=padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(cout) if bias else nn.LeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual 2x downsampling block (StyleGAN2 discriminator / LIA encoder)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(cin, cin, 3)
        self.conv2 = ConvLayer(cin, cout, 3, downsample=True)
        self.skip = ConvLayer(cin, cout, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution: per-sample weights scaled by an affine map of the style, then demodulated."""

    def __init__(self, cin: int, cout: int, k: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.cin, self.cout, self.k = cin, cout, k
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.scale = 1 / math.sqrt(cin * k * k)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (k - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        s = self.modulation(style).view(b, 1, cin, 1, 1)
        weight = self.scale * self.weight * s  # (B, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.cout, 1, 1, 1)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * cin, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, self.cout, *out.shape[-2:]))
        out = F.conv2d(x, weight.reshape(b * self.cout, cin, self.k, self.k), padding=self.k // 2, groups=b)
        return out.view(b, self.cout, *out.shape[-2:])


class StyledConv(nn.Module):
    """Modulated conv + fused activation (no noise injection: the release never feeds noise at inference)."""

    def __init__(self, cin: int, cout: int, k: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, k, style_dim, upsample=upsample)
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x, style))


class ToRGB(nn.Module):
    """1x1 conv to RGB, added to the 2x-upsampled RGB of the previous scale (the release uses an unmodulated conv)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ConvLayer(cin, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ToFlow(nn.Module):
    """Predicts a flow field (2 channels, tanh offsets) and an occlusion mask (sigmoid) from decoder features.

    The raw 3-channel prediction accumulates across scales like StyleGAN2's RGB skips. ``release_grid``: build the
    identity sampling grid exactly as the ToonTalker release does (see :func:`identity_grid`).
    """

    def __init__(self, cin: int, style_dim: int, release_grid: bool = False) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.release_grid = release_grid

    def forward(self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor,
                skip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(warped source feature * mask, mask, raw prediction)``."""
        raw = self.conv(x, style) + self.bias
        if skip is not None:
            raw = raw + self.upsample(skip)
        mask = torch.sigmoid(raw[:, 2:3])
        return warp(feat, torch.tanh(raw[:, :2]), self.release_grid) * mask, mask, raw


class FuseSFT(nn.Module):
    """Spatial feature transform refining a warped feature: ``f + f * scale(f) + shift(f)``."""

    def __init__(self, ch: int, style_dim: int) -> None:
        super().__init__()
        self.scale1 = StyledConv(ch, ch, 3, style_dim)
        self.scale2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.shift1 = StyledConv(ch, ch, 3, style_dim)
        self.shift2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, feat: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        scale = self.scale2(F.leaky_relu(self.scale1(feat, style), 0.2))
        shift = self.shift2(F.leaky_relu(self.shift1(feat, style), 0.2))
        return feat + feat * scale + shift


class QueryDecoderLayer(nn.Module):
    """DETR-style decoder layer: cross-attention queries -> memory, then self-attention, then an MLP.

    ``query`` ``(B, N, d)``, ``memory`` ``(B, M, d)``; batch-first. Post-norm (DETR's and the ToonTalker release's
    order) normalises after each residual sum; ``pre_norm`` normalises each sub-layer's input instead and leaves the
    residual stream unnormalised (same parameters, so either order loads the same weights).
    """

    def __init__(self, d: int, heads: int, ff: int, dropout: float = 0.0, pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            q = query + self.cross_attn(self.norm1(query), memory, memory, need_weights=False)[0]
            x = self.norm2(q)
            q = q + self.self_attn(x, x, x, need_weights=False)[0]
            return q + self.ff2(F.relu(self.ff1(self.norm3(q))))
        q = self.norm1(query + self.cross_attn(query, memory, memory, need_weights=False)[0])
        q = self.norm2(q + self.self_attn(q, q, q, need_weights=False)[0])
        return self.norm3(q + self.ff2(F.relu(self.ff1(q))))


# ----------------------------------------------------------------------------------------------------- networks
class StyleEncoder(nn.Module):
    """Image -> features at every scale (size .. 4 px) and, when ``out_dim`` is set, a vector (4x4 conv head)."""

    def __init__(self, size: int, channels: dict[int, int], out_dim: int | None = None) -> None:
        super().__init__()
        log = int(math.log2(size))
        self.convs = nn.ModuleList([ConvLayer(3, channels[size], 1)])
        cin = channels[size]
        for i in range(log, 2, -1):
            cout = channels[2 ** (i - 1)]
            self.convs.append(ResBlock(cin, cout))
            cin = cout
        self.has_head = out_dim is not None
        if out_dim is not None:
            self.convs.append(EqualConv2d(cin, out_dim, 4, bias=False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Returns ``(vector or None, features ordered from 4 px up to full size)``."""
        feats = []
        for conv in self.convs:
            x = conv(x)
            feats.append(x)
        if self.has_head:
            return feats[-1].flatten(1), feats[-2::-1]
        return None, feats[::-1]


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with a minibatch standard-deviation feature; returns one logit per image."""

    def __init__(self, size: int, channels: dict[int, int]) -> None:
        super().__init__()
        log = int(math.log2(size))
        blocks: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        cin = channels[size]
        for i in range(log, 2, -1):
            blocks.append(ResBlock(cin, channels[2 ** (i - 1)]))
            cin = channels[2 ** (i - 1)]
        self.convs = nn.Sequential(*blocks)
        self.final_conv = ConvLayer(cin + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, channels[4], activation=True),
                                          EqualLinear(channels[4], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        b = out.shape[0]
        group = min(b, 4) if b % min(b, 4) == 0 else 1
        y = out.view(group, -1, *out.shape[1:])
        std = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean([1, 2, 3])  # (B/group,)
        std = std.view(-1, 1, 1, 1).repeat(group, 1, *out.shape[2:])
        out = self.final_conv(torch.cat([out, std], 1))
        return self.final_linear(out.flatten(1)).squeeze(1)
