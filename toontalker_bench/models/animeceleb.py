"""AnimeCeleb-style pose-vector animator (Kim et al., ECCV 2022; PIRenderer-like) — method ``animeceleb``.

The generator is driven by an explicit 20-D pose vector (17 expression morphs in [0, 1] + yaw/pitch/roll in degrees,
:mod:`toontalker_bench.faces.pose`), not by an image:

- a shared **mapping network** turns (source pose, target pose - source pose) into a motion descriptor;
- per domain, a **warping network** (U-Net with AdaIN from the descriptor) predicts a dense flow that warps the
  source image, and an **editing network** (same shape) turns source + warped image into the output.

Training needs paired (frame, pose vector) data: the batch's ``motion_*`` vectors. Ground truth and pseudo labels
(3DMM fits supplied by the harness) are both used; how many of each were seen is kept in the checkpoint and in
``cfg["pose_labels"]`` (``true`` / ``pseudo`` / ``mixed``) so the leaderboard can say so.

Driving from video works as in AnimeCeleb: a 3DMM fit of each driving frame (yaw/pitch/roll + 10-D expression,
:func:`pose_features`) is mapped to the 20-D pose vector by a per-domain ridge-regression map
(:class:`PoseVectorMap`, the analogue of AnimeCeleb's 17 x 64 morph fits) whose sufficient statistics accumulate
during training from frames whose pose vector is known. In relative mode the driving pose change w.r.t. the first
driving frame is added to the source's own (estimated) pose.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.domains import DOMAINS, Domain
from ..core.errors import UserError
from ..faces.pose import N_MORPHS, POSE_DIM
from ..faces.pose_map import PoseEstimator, PoseVectorMap, pose_features
from .base import METHODS, Capabilities, Method, TrainingNeeds
from .blocks import warp
from .losses import ReconstructionLoss

log = logging.getLogger(__name__)

ANGLE_SCALE = 30.0  # degrees -> network units

def fill_missing(poses: torch.Tensor, default: torch.Tensor) -> torch.Tensor:
    """Replace NaN rows by the previous valid row (the next valid one at the start; ``default`` if none)."""
    ok = torch.isfinite(poses).all(1)
    if not ok.any():
        return default.to(poses).expand_as(poses).clone()
    idx = torch.arange(len(poses), device=poses.device)
    last = torch.cummax(torch.where(ok, idx, -1), 0).values
    first = int(idx[ok][0])
    return poses[torch.where(last >= 0, last, first)]


# ----------------------------------------------------------------------------------------------- networks
def normalise_pose(pose: torch.Tensor) -> torch.Tensor:
    return torch.cat([pose[:, :N_MORPHS], pose[:, N_MORPHS:] / ANGLE_SCALE], dim=1)


class MappingNetwork(nn.Module):
    """(source pose, target - source) -> motion descriptor."""

    def __init__(self, descriptor_dim: int, hidden: int, layers: int = 3) -> None:
        super().__init__()
        dims = [2 * POSE_DIM] + [hidden] * (layers - 1) + [descriptor_dim]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                mods.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*mods)

    def forward(self, pose_source: torch.Tensor, pose_target: torch.Tensor) -> torch.Tensor:
        s, t = normalise_pose(pose_source), normalise_pose(pose_target)
        return self.net(torch.cat([s, t - s], dim=1))


class AdaINBlock(nn.Module):
    """conv3x3 -> instance norm -> per-channel scale/shift from the descriptor -> LeakyReLU."""

    def __init__(self, cin: int, cout: int, descriptor_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.InstanceNorm2d(cout, affine=False)
        self.style = nn.Linear(descriptor_dim, 2 * cout)

    def forward(self, x: torch.Tensor, descriptor: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(descriptor)[:, :, None, None].chunk(2, dim=1)
        return F.leaky_relu(self.norm(self.conv(x)) * (1 + gamma) + beta, 0.2)


class ADAINHourglass(nn.Module):
    """U-Net whose every block is descriptor-modulated; returns full-resolution features."""

    def __init__(self, cin: int, channels: int, max_channels: int, num_down: int, descriptor_dim: int) -> None:
        super().__init__()
        ch = [min(max_channels, channels * 2**i) for i in range(num_down + 1)]
        self.first = AdaINBlock(cin, ch[0], descriptor_dim)
        self.down = nn.ModuleList(AdaINBlock(ch[i], ch[i + 1], descriptor_dim) for i in range(num_down))
        self.up = nn.ModuleList(AdaINBlock(ch[i + 1] + ch[i], ch[i], descriptor_dim) for i in reversed(range(num_down)))
        self.out_channels = ch[0]

    def forward(self, x: torch.Tensor, descriptor: torch.Tensor) -> torch.Tensor:
        skips = [self.first(x, descriptor)]
        for block in self.down:
            skips.append(block(F.avg_pool2d(skips[-1], 2), descriptor))
        out = skips.pop()
        for block in self.up:
            out = block(torch.cat([F.interpolate(out, scale_factor=2.0), skips.pop()], dim=1), descriptor)
        return out


class DomainGenerator(nn.Module):
    """One domain's warping network (flow) and editing network (final image)."""

    def __init__(self, channels: int, max_channels: int, num_down: int, descriptor_dim: int) -> None:
        super().__init__()
        self.warping = ADAINHourglass(3, channels, max_channels, num_down, descriptor_dim)
        self.flow = nn.Conv2d(self.warping.out_channels, 2, 3, padding=1)
        nn.init.zeros_(self.flow.weight)  # start from the identity warp
        nn.init.zeros_(self.flow.bias)
        self.editing = ADAINHourglass(6, channels, max_channels, num_down, descriptor_dim)
        self.to_rgb = nn.Conv2d(self.editing.out_channels, 3, 3, padding=1)

    def forward(self, source: torch.Tensor, descriptor: torch.Tensor) -> dict[str, torch.Tensor]:
        flow = self.flow(self.warping(source, descriptor))
        warped = warp(source, flow)
        edited = self.editing(torch.cat([source, warped], dim=1), descriptor)
        return {"flow": flow, "warped": warped, "prediction": torch.sigmoid(self.to_rgb(edited))}


# ----------------------------------------------------------------------------------------------- the method
@METHODS.register("animeceleb", summary="AnimeCeleb-style pose-vector animator (mapping + warping + editing, "
                                        "3DMM-to-pose-vector driving); needs paired pose data")
class AnimeCeleb(Method):
    name = "animeceleb"
    capabilities = Capabilities(trainable=True, cross_domain=True, self_reenactment=True, needs_paired_pose=True)
    optimizer_slots = {"adam": "opt"}

    def __init__(self, cfg: dict[str, Any], pose_estimator: PoseEstimator | None = None) -> None:
        super().__init__(cfg)
        dd = int(cfg.get("descriptor_dim", 128))
        self.mapping = MappingNetwork(dd, int(cfg.get("mapping_hidden", 128)), int(cfg.get("mapping_layers", 3)))
        self.generators = nn.ModuleDict({
            d: DomainGenerator(int(cfg.get("channels", 32)), int(cfg.get("max_channels", 128)),
                               int(cfg.get("num_down", 3)), dd) for d in DOMAINS})
        self.pose_maps = nn.ModuleDict({d: PoseVectorMap(ridge=float(cfg.get("pose_map_ridge", 1e-3)))
                                        for d in DOMAINS})
        self.register_buffer("label_counts", torch.zeros(2, dtype=torch.int64))  # (true, pseudo) samples seen
        self.register_load_state_dict_post_hook(lambda module, _keys: module._record_labels())
        loss = cfg.get("loss", {})
        self.weights = dict(loss.get("weights", {"warp": 1.0, "edit": 1.0}))
        self._loss = [ReconstructionLoss(str(loss.get("reconstruction", "auto")), float(loss.get("ssim", 1.0)),
                                         int(loss.get("scales", 3)), perceptual=loss.get("perceptual"))]
        # ^ outside the module tree: not checkpointed
        self.cfg["reconstruction_backend"] = self._loss[0].backend
        self.weights.update(self._loss[0].term_weights)  # the paper's weights while the VGG loss runs
        self.cfg["loss_weights_used"] = dict(self.weights)
        self.fit_every = int(cfg.get("pose_fit_every", 20))
        self._estimator = pose_estimator
        params = list(self.mapping.parameters()) + list(self.generators.parameters())
        self.opt = torch.optim.Adam(params, lr=float(cfg.get("lr", 1e-4)), betas=tuple(cfg.get("betas", (0.5, 0.999))))

    @property
    def estimator(self) -> PoseEstimator:
        return self._estimator or pose_features

    def variant(self) -> str:
        """Where its training pose vectors came from, and that its driving motion comes from the same landmarks and
        3DMM fit the AED/APD backends start from (so those metrics can flatter it: it aims at what they read)."""
        withheld = ",".join(self.cfg.get("pseudo_pose_domains", [])) or "none"
        return "; ".join([f"pseudo labels for: {withheld}; driven by the bfm3ddfa landmark fit (AED/APD read the same "
                          "landmarks)", *self.trainer_tags()])

    def training_needs(self) -> TrainingNeeds:
        return TrainingNeeds(pose_vectors=True, pseudo_pose_domains=tuple(self.cfg.get("pseudo_pose_domains", ())))

    def pose_labels(self) -> str:
        true, pseudo = (int(v) for v in self.label_counts)
        return "none" if not true + pseudo else "true" if not pseudo else "pseudo" if not true else "mixed"

    def _record_labels(self) -> None:
        """Keep ``cfg["pose_labels"]`` (what run configs and rows show) in step with the checkpointed counts."""
        self.cfg["pose_labels"] = self.pose_labels()

    # -- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        self.train()
        recon = self._loss[0].to(next(self.parameters()).device)
        losses: dict[str, torch.Tensor] = {}
        for domain, b in batch.items():
            ms, md = b["motion_source"], b["motion_driving"]
            keep = torch.isfinite(ms).all(1) & torch.isfinite(md).all(1)
            if not keep.any():
                continue
            true = b["motion_is_true"].bool() & keep
            self.label_counts += torch.stack([true.sum(), (keep & ~true).sum()]).to(self.label_counts)
            out = self.generators[domain](b["source"][keep], self.mapping(ms[keep], md[keep]))
            target = b["driving"][keep]
            warp_loss, edit_loss = recon.losses([out["warped"], out["prediction"]], target)  # one VGG pass
            losses[f"{domain}_warp"] = float(self.weights.get("warp", 1.0)) * warp_loss
            losses[f"{domain}_edit"] = float(self.weights.get("edit", 1.0)) * edit_loss
            if self.fit_every and step % self.fit_every == 0:
                self._accumulate_pose_map(domain, b["driving"][keep], md[keep])
        self._record_labels()
        if not losses:
            raise UserError("animeceleb got a training batch without any pose vector",
                            hint="it needs ground-truth or 3DMM pseudo pose vectors (motion_*) for training clips")
        loss = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {**{k: float(v.detach()) for k, v in losses.items()}, "loss": float(loss.detach())}

    @torch.no_grad()
    def _accumulate_pose_map(self, domain: str, frames: torch.Tensor, poses: torch.Tensor) -> None:
        feats = self.estimator(frames)
        added = self.pose_maps[domain].update(feats, poses.detach().cpu().numpy())
        log.debug("pose map %s: +%d pairs (%d in all)", domain, added, int(self.pose_maps[domain].n))

    # -- inference --------------------------------------------------------------------------------------------
    def estimate_pose(self, frames: torch.Tensor, domain: Domain) -> torch.Tensor:
        """``(T, 20)`` pose vectors of ``frames`` via the 3DMM fit and the domain's fitted map (gaps filled)."""
        pmap = self.pose_maps[domain]
        if not pmap.fitted:
            raise UserError(f"animeceleb has no fitted 3DMM -> pose-vector map for the {domain} domain",
                            hint="train it on data with pose vectors for that domain (the map is fitted in training)")
        return fill_missing(pmap(self.estimator(frames)), pmap.mean_target().float())

    @torch.no_grad()
    def animate_poses(self, source: torch.Tensor, pose_source: torch.Tensor, pose_target: torch.Tensor,
                      domain: Domain) -> torch.Tensor:
        """Render ``source`` ``(3, H, W)`` at each target pose ``(T, 20)``, given its own pose ``(20,)``."""
        self.eval()
        dev = next(self.parameters()).device
        src, p_src, p_tgt = source.to(dev)[None], pose_source.to(dev)[None], pose_target.to(dev)
        chunk = int(self.cfg.get("animate_batch", 32))
        outs = []
        for start in range(0, len(p_tgt), chunk):
            tgt = p_tgt[start:start + chunk]
            n = len(tgt)
            out = self.generators[domain](src.expand(n, -1, -1, -1), self.mapping(p_src.expand(n, -1), tgt))
            outs.append(out["prediction"].float().cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        pose_drv = self.estimate_pose(driving, driving_domain)
        pose_src = self.estimate_pose(source[None], source_domain)[0]
        if relative:
            target = pose_src + (pose_drv - pose_drv[:1])
            target[:, :N_MORPHS] = target[:, :N_MORPHS].clamp(0, 1)
        else:
            target = pose_drv
        return self.animate_poses(source, pose_src, target, source_domain)
