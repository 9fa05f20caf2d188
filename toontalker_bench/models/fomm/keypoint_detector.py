"""Keypoint detector: hourglass -> K softmax heatmaps -> keypoints and local affine Jacobians (official
``modules/keypoint_detector.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import AntiAliasInterpolation2d
from .util import KP, Hourglass, make_coordinate_grid


class KPDetector(nn.Module):
    """Keypoints as soft-argmax of softmax heatmaps (temperature), Jacobians as heatmap-weighted 2x2 maps."""

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
                 temperature: float, estimate_jacobian: bool = True, scale_factor: float = 1.0, pad: int = 0) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, 7, padding=pad)
        self.jacobian: nn.Conv2d | None = None
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * num_kp, 7, padding=pad)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(num_kp))
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, x: torch.Tensor) -> KP:
        if self.scale_factor != 1:
            x = self.down(x)
        features = self.predictor(x)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.reshape(b, k, h * w) / self.temperature, dim=2)
        grid = make_coordinate_grid(h, w, heatmap).reshape(h * w, 2)
        out: KP = {"value": heatmap @ grid}
        if self.jacobian is not None:
            jac_map = self.jacobian(features).reshape(b, k, 4, h * w)
            out["jacobian"] = torch.einsum("bkn,bkcn->bkc", heatmap, jac_map).reshape(b, k, 2, 2)
        return out
