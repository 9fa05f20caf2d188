"""Sanity baselines that bracket the metric scales: ``copy-source`` (no motion at all) and ``oracle-driving``
(the ground-truth driving frame, an upper bound that only exists for self-reenactment)."""

from __future__ import annotations

import torch

from ..domains import Domain
from .base import METHODS, Capabilities, Method


@METHODS.register("copy-source", summary="every output frame is the source image (lower bound)")
class CopySource(Method):
    name = "copy-source"
    capabilities = Capabilities(trainable=False)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        return source.unsqueeze(0).expand(driving.shape[0], *source.shape).clone()


@METHODS.register("oracle-driving", summary="output = ground-truth driving frame (self-reenactment upper bound)")
class OracleDriving(Method):
    name = "oracle-driving"
    capabilities = Capabilities(trainable=False, cross_domain=False, needs_driving_ground_truth=True)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        return driving.clone()
