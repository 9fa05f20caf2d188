"""Occlusion-aware generator: encode the source, warp its features by the dense motion, mask occlusions, decode
(official ``modules/generator.py``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dense_motion import DenseMotionNetwork
from .util import KP, DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, warp


class OcclusionAwareGenerator(nn.Module):
    """Encoder -> features warped by the dense flow and masked by occlusion -> residual bottleneck -> decoder."""

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 num_bottleneck_blocks: int, estimate_occlusion_map: bool, dense_motion_params: dict[str, Any],
                 align_corners: bool = True) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                       estimate_occlusion_map=estimate_occlusion_map,
                                                       align_corners=align_corners, **dense_motion_params)
        ch = lambda i: min(max_features, block_expansion * 2**i)  # noqa: E731
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(DownBlock2d(ch(i), ch(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(ch(num_down_blocks - i), ch(num_down_blocks - i - 1)) for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(ch(num_down_blocks)))
        self.final = nn.Conv2d(block_expansion, num_channels, 7, padding=3)

    def encode(self, source_image: torch.Tensor) -> torch.Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor, source_image: torch.Tensor, kp_driving: KP,
               kp_source: KP) -> dict[str, torch.Tensor]:
        """Warp pre-computed source ``features`` (broadcastable over the batch of ``kp_driving``) and decode."""
        motion = self.dense_motion_network(source_image, kp_driving, kp_source)
        flow = motion["deformation"]
        if flow.shape[1:3] != features.shape[2:]:
            # resizes: align_corners=False in either mode, as the official F.interpolate default (PyTorch >= 0.4)
            flow = F.interpolate(flow.permute(0, 3, 1, 2), size=features.shape[2:], mode="bilinear",
                                 align_corners=False).permute(0, 2, 3, 1)
        if features.shape[0] != flow.shape[0]:
            features = features.expand(flow.shape[0], -1, -1, -1)
        out = warp(features, flow, align_corners=self.align_corners)
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear", align_corners=False)
            out = out * occlusion
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        motion["prediction"] = torch.sigmoid(self.final(out))
        return motion

    def forward(self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP) -> dict[str, torch.Tensor]:
        return self.decode(self.encode(source_image), source_image, kp_driving, kp_source)
