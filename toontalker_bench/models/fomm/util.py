"""Geometry helpers and the convolution blocks the FOMM networks share (the official ``modules/util.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KP = dict[str, torch.Tensor]  # {"value": (B, K, 2), "jacobian": (B, K, 2, 2)}


def make_coordinate_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """``(h, w, 2)`` grid of (x, y) in [-1, 1], corners aligned."""
    x = torch.linspace(-1.0, 1.0, w, dtype=like.dtype, device=like.device)
    y = torch.linspace(-1.0, 1.0, h, dtype=like.dtype, device=like.device)
    return torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)


def inverse_jacobian(jacobian: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(..., 2, 2)`` keypoint Jacobians in float32: ``linalg.inv`` has no bfloat16 kernel, and under
    the trainer's CUDA autocast the keypoint detector hands out bfloat16 Jacobians."""
    return torch.linalg.inv(jacobian.float())


def kp2gaussian(kp_value: torch.Tensor, h: int, w: int, variance: float) -> torch.Tensor:
    """Gaussian bumps ``(B, K, h, w)`` centred on keypoints ``(B, K, 2)``."""
    grid = make_coordinate_grid(h, w, kp_value)
    diff = grid[None, None] - kp_value[:, :, None, None, :]
    return torch.exp(-0.5 * diff.square().sum(-1) / variance)


def warp(image: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros",
         align_corners: bool = True) -> torch.Tensor:
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)


class ResBlock2d(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice)."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class SameBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    """conv-BN-ReLU then 2x average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 2)


class UpBlock2d(SameBlock2d):
    """2x nearest upsampling then conv-BN-ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0))


class Encoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        ch = lambda i: min(max_features, block_expansion * 2**i)  # noqa: E731
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else ch(i), ch(i + 1)) for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        ch = lambda i: min(max_features, block_expansion * 2**i)  # noqa: E731
        self.up_blocks = nn.ModuleList(
            UpBlock2d((1 if i == num_blocks - 1 else 2) * ch(i + 1), ch(i)) for i in reversed(range(num_blocks)))
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net: ``num_blocks`` down blocks, mirrored up blocks with skip concatenation; keeps the input resolution."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
