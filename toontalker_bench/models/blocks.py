"""Network building blocks more than one method uses: flow warping (ToonTalker, AnimeCeleb-style baseline), FOMM's
band-limited downscale (FOMM, the perceptual-loss pyramid), image losses. ToonTalker's own StyleGAN2-style layers are
in ``models.toontalker.blocks``.

- helpers: :func:`identity_grid`, :func:`warp`;
- image losses and their downscale, on images in any range: :class:`AntiAliasInterpolation2d`, :func:`ssim`,
  :func:`multiscale_l1`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------------- helpers
def identity_grid(h: int, w: int, batch: int, device: torch.device, dtype: torch.dtype,
                  release: bool = False) -> torch.Tensor:
    """Sampling grid ``(B, H, W, 2)`` with x, y in ``linspace(-1, 1)`` (the LIA/ToonTalker convention).

    ``release=True`` builds the coordinates as the ToonTalker release does: ``numpy.linspace`` in float64, rounded to
    float32, then cast to ``dtype`` (``torch.linspace`` in float32 can differ from it in the last bit; in float64
    the rounding to float32 is the whole difference).
    """
    if release:
        ys = torch.from_numpy(np.linspace(-1, 1, h)).float().to(device=device, dtype=dtype)
        xs = torch.from_numpy(np.linspace(-1, 1, w)).float().to(device=device, dtype=dtype)
    else:
        ys = torch.linspace(-1, 1, h, device=device, dtype=dtype)
        xs = torch.linspace(-1, 1, w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1).unsqueeze(0).expand(batch, h, w, 2)


def warp(feat: torch.Tensor, offsets: torch.Tensor, release_grid: bool = False) -> torch.Tensor:
    """Backward-warp ``feat`` by ``offsets`` ``(B, 2, H, W)`` (x, y, in normalised units) added to the identity grid
    (built as the release builds it when ``release_grid``; see :func:`identity_grid`).

    ``align_corners=False`` as in the public release, so released weights reproduce their outputs.
    """
    b, _, h, w = offsets.shape
    grid = identity_grid(h, w, b, offsets.device, offsets.dtype, release_grid) + offsets.permute(0, 2, 3, 1)
    if feat.shape[-2:] != (h, w):
        feat = F.interpolate(feat, size=(h, w), mode="bilinear", align_corners=False)
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ----------------------------------------------------------------------------------------------------- image losses
class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur (sigma = (1/scale - 1) / 2) then nearest subsampling: FOMM's and LIA's band-limited downscale,
    used by FOMM's keypoint detector and the perceptual-loss pyramid; ``weight`` is a buffer, named as in FOMM's release."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-ax.square() / (2 * sigma**2)) if sigma > 0 else (ax == 0).float()
        kernel = torch.outer(g, g)
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).clone())
        self.groups = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, self.weight, groups=self.groups)
        return F.interpolate(out, scale_factor=(self.scale, self.scale))


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004, Gaussian window, valid region) per image, shape ``(B,)``."""
    c = x.shape[1]
    w = _gaussian_window(min(window, x.shape[-1]), sigma, c, x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mx * mx
    syy = F.conv2d(y * y, w, groups=c) - my * my
    sxy = F.conv2d(x * y, w, groups=c) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean([1, 2, 3])


def multiscale_l1(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean L1 over an image pyramid (full, 1/2, 1/4 ... resolution), averaged over scales."""
    total = x.new_zeros(())
    for i in range(scales):
        if i:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        total = total + (x - y).abs().mean()
    return total / scales
