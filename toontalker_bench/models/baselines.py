"""Brackets: reference points that show what the metrics give for known answers, never ranked as methods.

- ``copy-source``: every output frame is the source image (no motion at all);
- ``mean-face``: every output frame is the mean training face of the source's domain (a blurry average face: it
  exposes metrics that reward blur or an average face);
- ``oracle-driving``: the ground-truth driving frame (self-reenactment only: there it is the right answer);
- ``oracle-render``: the exact relative-motion answer, re-drawn by the demo corpus's renderer (the source identity
  moved by the driving clip's ground-truth motion relative to its first frame) — every task, cross-domain included,
  wherever the renderer can draw the source (:mod:`toontalker_bench.data.synth.oracle`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core.domains import DOMAINS, Domain
from ..core.errors import ConfigError
from .base import METHODS, Capabilities, Method, PairContext, to_tensor


@METHODS.register("copy-source", summary="bracket: every output frame is the source image (no motion)")
class CopySource(Method):
    name = "copy-source"
    capabilities = Capabilities(trainable=False, bracket=True)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        return source.unsqueeze(0).expand(driving.shape[0], *source.shape).clone()


@METHODS.register("oracle-driving", summary="bracket: output = ground-truth driving frame (self-reenactment answer)")
class OracleDriving(Method):
    name = "oracle-driving"
    capabilities = Capabilities(trainable=False, cross_domain=False, needs_driving_ground_truth=True, bracket=True)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        return driving.clone()


@METHODS.register("oracle-render", summary="bracket: the renderer's exact relative-motion answer (demo corpus)")
class OracleRender(Method):
    """Draws the source clip's identity, framed as in the source frame, with the driving clip's ground-truth motion
    relative to its first frame; resized to the profile's size like every method's output."""

    name = "oracle-render"
    capabilities = Capabilities(trainable=False, needs_driving_ground_truth=True, needs_pair_context=True,
                                bracket=True)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True, context: PairContext | None = None) -> torch.Tensor:
        from ..data.synth.oracle import answer

        if context is None:
            raise ConfigError("oracle-render needs the protocol pair it answers",
                              hint="it runs inside `toontalker-bench run` / `evaluate run` only")
        if not relative:
            raise ConfigError("oracle-render draws the relative-motion answer only")
        frames, _ = answer(context.dataset_dir, context.source_clip, context.source_frame, context.driving_clip,
                           context.driving_start, context.n_frames)
        out = to_tensor(frames)
        if out.shape[-1] != self.size:
            out = F.interpolate(out, size=(self.size, self.size), mode="area")
        return out.clamp(0, 1)


@METHODS.register("mean-face", summary="bracket: every output frame is the mean training face of the source domain")
class MeanFace(Method):
    """Learns nothing but the pixel mean of its domain's training frames (the trainer feeds it batches; there is
    no optimiser), then outputs it for every frame."""

    name = "mean-face"
    capabilities = Capabilities(trainable=True, bracket=True)

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        for d in DOMAINS:
            self.register_buffer(f"sum_{d}", torch.zeros(3, self.size, self.size, dtype=torch.float64))
            self.register_buffer(f"count_{d}", torch.zeros((), dtype=torch.float64))

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        for d, b in batch.items():
            frames = torch.cat([b["source"], b["driving"]]).double()
            getattr(self, f"sum_{d}").add_(frames.sum(0))
            getattr(self, f"count_{d}").add_(len(frames))
        return {"loss": 0.0, "frames": float(sum(getattr(self, f"count_{d}") for d in DOMAINS))}

    def mean(self, domain: Domain) -> torch.Tensor:
        n = getattr(self, f"count_{domain}")
        if n <= 0:
            raise ConfigError(f"mean-face has seen no {domain} training frames", hint="train it first")
        return (getattr(self, f"sum_{domain}") / n).float()

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        m = self.mean(source_domain).to(source.device)
        if m.shape[-1] != source.shape[-1]:
            m = F.interpolate(m[None], size=source.shape[-2:], mode="area")[0]
        return m.unsqueeze(0).expand(driving.shape[0], *m.shape).clone()
