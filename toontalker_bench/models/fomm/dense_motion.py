"""Dense motion network: sparse first-order motions around keypoints -> dense backward flow + occlusion map
(official ``modules/dense_motion.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import AntiAliasInterpolation2d
from .util import KP, Hourglass, inverse_jacobian, kp2gaussian, make_coordinate_grid, warp


class DenseMotionNetwork(nn.Module):
    """Sparse per-keypoint affine motions -> soft-assigned dense backward flow ``(B, h, w, 2)`` + occlusion map."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
                 estimate_occlusion_map: bool = True, scale_factor: float = 1.0, kp_variance: float = 0.01,
                 align_corners: bool = True) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, 7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, 7, padding=3) if estimate_occlusion_map else None
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def sparse_motions(self, h: int, w: int, kp_driving: KP, kp_source: KP) -> torch.Tensor:
        """``(B, K+1, h, w, 2)``: identity (background) then, per keypoint, z -> kp_s + J_s J_d^-1 (z - kp_d)."""
        b = kp_source["value"].shape[0]
        grid = make_coordinate_grid(h, w, kp_source["value"])
        rel = grid[None, None] - kp_driving["value"][:, :, None, None, :]
        if "jacobian" in kp_driving:
            jac = kp_source["jacobian"] @ inverse_jacobian(kp_driving["jacobian"])
            rel = torch.einsum("bkij,bkhwj->bkhwi", jac, rel)
        to_source = rel + kp_source["value"][:, :, None, None, :]
        return torch.cat([grid.expand(b, 1, h, w, 2), to_source], dim=1)

    def forward(self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, c, h, w = source_image.shape
        k1 = self.num_kp + 1
        heat = (kp2gaussian(kp_driving["value"], h, w, self.kp_variance)
                - kp2gaussian(kp_source["value"], h, w, self.kp_variance))
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1)
        motions = self.sparse_motions(h, w, kp_driving, kp_source)
        src = source_image.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        deformed = warp(src, motions.reshape(b * k1, h, w, 2), align_corners=self.align_corners)
        deformed = deformed.reshape(b, k1, c, h, w)
        net_in = torch.cat([heat.unsqueeze(2), deformed], dim=2).reshape(b, k1 * (c + 1), h, w)
        features = self.hourglass(net_in)
        mask = F.softmax(self.mask(features), dim=1)
        out = {"sparse_deformed": deformed, "mask": mask,
               "deformation": torch.einsum("bkhwc,bkhw->bhwc", motions, mask)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))
        return out
