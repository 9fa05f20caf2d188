"""Multi-scale patch discriminator with feature outputs for feature matching (official
``modules/discriminator.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Discriminator(nn.Module):
    """Patch discriminator (conv4x4-InstanceNorm-LeakyReLU-avgpool blocks, spectral norm); returns maps + score."""

    def __init__(self, num_channels: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        layers = []
        cin = num_channels
        for i in range(num_blocks):
            cout = min(max_features, block_expansion * 2 ** (i + 1))
            layers.append(nn.ModuleDict({
                "conv": nn.utils.parametrizations.spectral_norm(nn.Conv2d(cin, cout, 4)),
                "norm": nn.InstanceNorm2d(cout, affine=True) if i else nn.Identity()}))
            cin = cout
        self.down_blocks = nn.ModuleList(layers)
        self.conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(cin, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = []
        for i, block in enumerate(self.down_blocks):
            x = F.leaky_relu(block["norm"](block["conv"](x)), 0.2)
            if i < len(self.down_blocks) - 1:
                x = F.avg_pool2d(x, 2)
            feats.append(x)
        return feats, self.conv(x)
