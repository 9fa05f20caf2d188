"""First Order Motion Model (Siarohin et al., NeurIPS 2019) — method ``fomm``.

Keypoint detector (hourglass, K keypoints with local affine Jacobians, softmax heatmaps), dense motion network
(sparse first-order motions -> dense backward flow + occlusion map) and occlusion-aware generator, trained with a
multi-scale reconstruction loss and equivariance constraints under random TPS warps.

Sub-module and parameter names follow the official implementation (``modules/keypoint_detector.py``,
``generator.py``, ``dense_motion.py``, ``util.py``), so the official ``vox-cpk.pth.tar`` loads through an identity
name mapping (:mod:`.release`). Coordinates are in [-1, 1] with the corner-aligned convention of the release.

``align_corners`` (profile key, default true) is what every ``grid_sample`` uses. The release was trained with
PyTorch 1.0, whose ``grid_sample`` aligned corners (true: reproduces the released weights and the published numbers);
the official code run on PyTorch >= 1.3 samples with false. Bilinear resizes (flow and occlusion map, when the dense
motion runs at another resolution than the generator's features) never align corners, as in the official code on
every PyTorch since 0.4.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.domains import DOMAINS, Domain
from ..base import METHODS, Capabilities, Method
from ..losses import ReconstructionLoss
from .discriminator import Discriminator
from .generator import OcclusionAwareGenerator
from .keypoint_detector import KPDetector
from .release import load_release
from .util import KP, inverse_jacobian, make_coordinate_grid, warp


# ----------------------------------------------------------------------------------------------- equivariance
class RandomTPS:
    """Random affine + thin-plate-spline warp of [-1, 1] coordinates (FOMM Sec. 3.3), with its analytic Jacobian.

    The radial term uses the L1 distance to the control points, ``phi(r) = r^2 log(r + 1e-6)``, added to both
    coordinates — the form of the public implementation, which the release's equivariance training used.
    """

    def __init__(self, batch: int, sigma_affine: float, sigma_tps: float, points_tps: int, *,
                 like: torch.Tensor, generator: torch.Generator | None = None, align_corners: bool = True) -> None:
        self.align_corners = align_corners
        kw = dict(dtype=like.dtype, device=like.device)
        noise = torch.randn(batch, 2, 3, generator=generator).to(**kw) * sigma_affine
        self.theta = noise + torch.eye(2, 3, **kw)
        self.control_points = make_coordinate_grid(points_tps, points_tps, like).reshape(-1, 2)
        self.control_params = torch.randn(batch, points_tps**2, generator=generator).to(**kw) * sigma_tps
        self.batch = batch

    def _distances(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = coords[:, :, None, :] - self.control_points[None, None]  # (B, N, P, 2)
        return diff, diff.abs().sum(-1)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """``(B, N, 2)`` -> ``(B, N, 2)``."""
        out = coords @ self.theta[:, :, :2].transpose(1, 2) + self.theta[:, None, :, 2]
        _, r = self._distances(coords)
        radial = (r.square() * torch.log(r + 1e-6) * self.control_params[:, None, :]).sum(-1, keepdim=True)
        return out + radial

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """``(B, N, 2, 2)`` d warp / d coords, row = output coordinate."""
        diff, r = self._distances(coords)
        dphi = 2 * r * torch.log(r + 1e-6) + r.square() / (r + 1e-6)
        grad = ((dphi * self.control_params[:, None, :])[..., None] * torch.sign(diff)).sum(2)  # (B, N, 2)
        return self.theta[:, None, :, :2] + grad[:, :, None, :]

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        b, _, h, w = frame.shape
        grid = make_coordinate_grid(h, w, frame).reshape(1, h * w, 2).expand(b, -1, -1)
        return warp(frame, self.warp_coordinates(grid).reshape(b, h, w, 2), padding_mode="reflection",
                    align_corners=self.align_corners)


def equivariance_losses(kp_detector: nn.Module, kp_driving: KP, driving: torch.Tensor,
                        transform: RandomTPS) -> dict[str, torch.Tensor]:
    """Mean |kp - T(kp(T-warped frame))| and mean |I - J_d^-1 (dT J_t)| (unweighted)."""
    kp_t = kp_detector(transform.transform_frame(driving))
    out = {"equivariance_value": (kp_driving["value"] - transform.warp_coordinates(kp_t["value"])).abs().mean()}
    if "jacobian" in kp_t:
        jac_t = transform.jacobian(kp_t["value"]) @ kp_t["jacobian"]
        value = inverse_jacobian(kp_driving["jacobian"]) @ jac_t
        out["equivariance_jacobian"] = (torch.eye(2, dtype=value.dtype, device=value.device) - value).abs().mean()
    return out


# ----------------------------------------------------------------------------------------------- the method
def normalize_kp(kp_source: KP, kp_driving: KP, kp_driving_initial: KP) -> KP:
    """Relative motion: the driving displacement and Jacobian change w.r.t. the first driving frame, on the source."""
    out = {"value": kp_driving["value"] - kp_driving_initial["value"] + kp_source["value"]}
    if "jacobian" in kp_driving:
        change = kp_driving["jacobian"] @ inverse_jacobian(kp_driving_initial["jacobian"])
        out["jacobian"] = change @ kp_source["jacobian"]
    return out


def _batch_images(batch: dict[str, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source and driving frames of every domain present, concatenated."""
    doms = [batch[d] for d in DOMAINS if d in batch]
    return torch.cat([d["source"] for d in doms]), torch.cat([d["driving"] for d in doms])


@METHODS.register("fomm", summary="First Order Motion Model (NeurIPS 2019): keypoints + local affine motion")
class FOMM(Method):
    """FOMM, trained on both domains jointly; applied across domains as is (the naive cross-domain baseline)."""

    name = "fomm"
    capabilities = Capabilities(trainable=True, cross_domain=True, self_reenactment=True)
    optimizer_slots = {"generator": "opt", "discriminator": "opt_d"}

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        common = cfg.get("common_params", {})
        num_kp, channels = int(common.get("num_kp", 10)), int(common.get("num_channels", 3))
        jac = bool(common.get("estimate_jacobian", True))
        self.kp_detector = KPDetector(num_kp=num_kp, num_channels=channels, estimate_jacobian=jac,
                                      **cfg["kp_detector_params"])
        gen = dict(cfg["generator_params"])
        # every grid_sample: true = the release's training-time PyTorch 1.0 (see the module docstring)
        self.align_corners = self.cfg["align_corners"] = bool(cfg.get("align_corners", True))
        self.generator = OcclusionAwareGenerator(num_channels=channels, num_kp=num_kp, align_corners=self.align_corners,
                                                 **gen)
        loss = cfg.get("loss", {})
        self.loss_weights = dict(loss.get("weights", {}))
        self.transform_params = dict(loss.get("transform_params", {}))
        # held outside the module tree: loss networks are not part of the method's checkpoint
        self._loss = [ReconstructionLoss(str(loss.get("reconstruction", "auto")), float(loss.get("ssim", 1.0)),
                                         int(loss.get("scales", 4)), perceptual=loss.get("perceptual"))]
        self.cfg["reconstruction_backend"] = self._loss[0].backend  # recorded in the run's resolved config
        self.loss_weights.update(self._loss[0].term_weights)  # the paper's weights while the VGG loss runs
        self.cfg["loss_weights_used"] = dict(self.loss_weights)
        self.discriminator: Discriminator | None = None
        lr = float(cfg.get("lr", 2e-4))
        self.opt = torch.optim.Adam(list(self.kp_detector.parameters()) + list(self.generator.parameters()),
                                    lr=lr, betas=(0.5, 0.999))
        self.opt_d: torch.optim.Optimizer | None = None
        if float(self.loss_weights.get("generator_gan", 0)) > 0:
            self.discriminator = Discriminator(channels, **cfg.get("discriminator_params", {}))
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.channels_last = bool(cfg.get("channels_last", False))
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # -- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        self.train()
        source, driving = (self._prep(x) for x in _batch_images(batch))
        kp_source, kp_driving = self.kp_detector(source), self.kp_detector(driving)
        generated = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        pred = generated["prediction"]
        w = self.loss_weights
        recon = self._loss[0].to(driving.device)
        losses = {"reconstruction": float(w.get("reconstruction", 10.0)) * recon(pred, driving)}
        if float(w.get("equivariance_value", 0)) or float(w.get("equivariance_jacobian", 0)):
            tps = RandomTPS(driving.shape[0], like=driving, align_corners=self.align_corners, **self.transform_params)
            eq = equivariance_losses(self.kp_detector, kp_driving, driving, tps)
            for k, v in eq.items():
                losses[k] = float(w.get(k, 0)) * v
        if self.discriminator is not None:
            feats_fake, score_fake = self.discriminator(pred)
            with torch.no_grad():
                feats_real, _ = self.discriminator(driving)
            losses["gen_gan"] = float(w["generator_gan"]) * (1 - score_fake).square().mean()
            fm = float(w.get("feature_matching", 0))
            if fm:
                losses["feature_matching"] = fm * sum((a - b).abs().mean() for a, b in zip(feats_real, feats_fake))
        loss = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        logs = {k: float(v.detach()) for k, v in losses.items()}
        if self.discriminator is not None and self.opt_d is not None:
            _, real = self.discriminator(driving)
            _, fake = self.discriminator(pred.detach())
            d_loss = float(w.get("discriminator_gan", 1.0)) * ((1 - real).square().mean() + fake.square().mean())
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logs["disc_gan"] = float(d_loss.detach())
        logs["loss"] = float(loss.detach())
        return logs

    # -- inference --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        self.eval()
        dev = next(self.parameters()).device
        src = self._prep(source.to(dev).unsqueeze(0))
        kp_source = self.kp_detector(src)
        features = self.generator.encode(src)
        chunk = int(self.cfg.get("animate_batch", 16))
        kp_initial = self.kp_detector(self._prep(driving[:1].to(dev))) if relative else None
        outs = []
        for start in range(0, driving.shape[0], chunk):
            drv = self._prep(driving[start:start + chunk].to(dev))
            n = drv.shape[0]
            kp_drv = self.kp_detector(drv)
            kp_src = {k: v.expand(n, *v.shape[1:]) for k, v in kp_source.items()}
            if kp_initial is not None:
                kp_drv = normalize_kp(kp_src, kp_drv, {k: v.expand(n, *v.shape[1:]) for k, v in kp_initial.items()})
            out = self.generator.decode(features, src.expand(n, -1, -1, -1), kp_drv, kp_src)
            outs.append(out["prediction"].float().cpu())
        return torch.cat(outs).contiguous()

    # -- checkpoints ------------------------------------------------------------------------------------------
    def load_release_checkpoint(self, path: str, trust: bool = False) -> list[str]:
        """Load the official ``vox-cpk.pth.tar`` (or any release with ``generator`` / ``kp_detector`` state dicts)."""
        return load_release(self, path, trust)
