"""First Order Motion Model (Siarohin et al., NeurIPS 2019) — method ``fomm``.

Keypoint detector (hourglass, K keypoints with local affine Jacobians, softmax heatmaps), dense motion network
(sparse first-order motions -> dense backward flow + occlusion map) and occlusion-aware generator, trained with a
multi-scale reconstruction loss and equivariance constraints under random TPS warps.

Sub-module and parameter names follow the official implementation (``modules/keypoint_detector.py``,
``generator.py``, ``dense_motion.py``, ``util.py``), so the official ``vox-cpk.pth.tar`` loads through an identity
name mapping (:data:`RELEASE_NAME_MAP`). Coordinates are in [-1, 1] with the corner-aligned convention of the
release (it was trained with PyTorch 1.0, whose ``grid_sample`` aligned corners).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .checkpoint import load_torch_file
from .losses import ReconstructionLoss
from ..domains import Domain
from .base import METHODS, Capabilities, Method


KP = dict[str, torch.Tensor]  # {"value": (B, K, 2), "jacobian": (B, K, 2, 2)}

#: official top-level checkpoint key -> our sub-module; parameter names below it are identical.
RELEASE_NAME_MAP: dict[str, str] = {"generator": "generator", "kp_detector": "kp_detector"}
#: release keys we deliberately do not load (reason shown to the user).
RELEASE_IGNORED: dict[str, str] = {
    "discriminator": "not needed for animation",
    "optimizer_generator": "optimiser state is not transferred",
    "optimizer_kp_detector": "optimiser state is not transferred",
    "optimizer_discriminator": "optimiser state is not transferred",
    "epoch": "training bookkeeping",
}


# ----------------------------------------------------------------------------------------------- geometry helpers
def make_coordinate_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """``(h, w, 2)`` grid of (x, y) in [-1, 1], corners aligned."""
    x = torch.linspace(-1.0, 1.0, w, dtype=like.dtype, device=like.device)
    y = torch.linspace(-1.0, 1.0, h, dtype=like.dtype, device=like.device)
    return torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)


def kp2gaussian(kp_value: torch.Tensor, h: int, w: int, variance: float) -> torch.Tensor:
    """Gaussian bumps ``(B, K, h, w)`` centred on keypoints ``(B, K, 2)``."""
    grid = make_coordinate_grid(h, w, kp_value)
    diff = grid[None, None] - kp_value[:, :, None, None, :]
    return torch.exp(-0.5 * diff.square().sum(-1) / variance)


def warp(image: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then nearest subsampling (band-limited downscale); ``weight`` is a buffer as in the release."""

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


# ----------------------------------------------------------------------------------------------- conv blocks
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


# ----------------------------------------------------------------------------------------------- networks
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


class DenseMotionNetwork(nn.Module):
    """Sparse per-keypoint affine motions -> soft-assigned dense backward flow ``(B, h, w, 2)`` + occlusion map."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
                 estimate_occlusion_map: bool = True, scale_factor: float = 1.0, kp_variance: float = 0.01) -> None:
        super().__init__()
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
            jac = kp_source["jacobian"] @ torch.linalg.inv(kp_driving["jacobian"])
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
        deformed = warp(src, motions.reshape(b * k1, h, w, 2)).reshape(b, k1, c, h, w)
        net_in = torch.cat([heat.unsqueeze(2), deformed], dim=2).reshape(b, k1 * (c + 1), h, w)
        features = self.hourglass(net_in)
        mask = F.softmax(self.mask(features), dim=1)
        out = {"sparse_deformed": deformed, "mask": mask,
               "deformation": torch.einsum("bkhwc,bkhw->bhwc", motions, mask)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))
        return out


class OcclusionAwareGenerator(nn.Module):
    """Encoder -> features warped by the dense flow and masked by occlusion -> residual bottleneck -> decoder."""

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 num_bottleneck_blocks: int, estimate_occlusion_map: bool, dense_motion_params: dict[str, Any]) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                       estimate_occlusion_map=estimate_occlusion_map,
                                                       **dense_motion_params)
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
            flow = F.interpolate(flow.permute(0, 3, 1, 2), size=features.shape[2:], mode="bilinear",
                                 align_corners=True).permute(0, 2, 3, 1)
        if features.shape[0] != flow.shape[0]:
            features = features.expand(flow.shape[0], -1, -1, -1)
        out = warp(features, flow)
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear", align_corners=True)
            out = out * occlusion
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        motion["prediction"] = torch.sigmoid(self.final(out))
        return motion

    def forward(self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP) -> dict[str, torch.Tensor]:
        return self.decode(self.encode(source_image), source_image, kp_driving, kp_source)


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


# ----------------------------------------------------------------------------------------------- equivariance
class RandomTPS:
    """Random affine + thin-plate-spline warp of [-1, 1] coordinates (FOMM Sec. 3.3), with its analytic Jacobian.

    The radial term uses the L1 distance to the control points, ``phi(r) = r^2 log(r + 1e-6)``, added to both
    coordinates — the form of the public implementation, which the release's equivariance training used.
    """

    def __init__(self, batch: int, sigma_affine: float, sigma_tps: float, points_tps: int, *,
                 like: torch.Tensor, generator: torch.Generator | None = None) -> None:
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
        return warp(frame, self.warp_coordinates(grid).reshape(b, h, w, 2), padding_mode="reflection")


def equivariance_losses(kp_detector: nn.Module, kp_driving: KP, driving: torch.Tensor,
                        transform: RandomTPS) -> dict[str, torch.Tensor]:
    """Mean |kp - T(kp(T-warped frame))| and mean |I - J_d^-1 (dT J_t)| (unweighted)."""
    kp_t = kp_detector(transform.transform_frame(driving))
    out = {"equivariance_value": (kp_driving["value"] - transform.warp_coordinates(kp_t["value"])).abs().mean()}
    if "jacobian" in kp_t:
        jac_t = transform.jacobian(kp_t["value"]) @ kp_t["jacobian"]
        value = torch.linalg.inv(kp_driving["jacobian"]) @ jac_t
        out["equivariance_jacobian"] = (torch.eye(2, dtype=value.dtype, device=value.device) - value).abs().mean()
    return out


# ----------------------------------------------------------------------------------------------- the method
def normalize_kp(kp_source: KP, kp_driving: KP, kp_driving_initial: KP) -> KP:
    """Relative motion: the driving displacement and Jacobian change w.r.t. the first driving frame, on the source."""
    out = {"value": kp_driving["value"] - kp_driving_initial["value"] + kp_source["value"]}
    if "jacobian" in kp_driving:
        change = kp_driving["jacobian"] @ torch.linalg.inv(kp_driving_initial["jacobian"])
        out["jacobian"] = change @ kp_source["jacobian"]
    return out


def _batch_images(batch: dict[str, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source and driving frames of every domain present, concatenated."""
    doms = [batch[d] for d in ("real", "cartoon") if d in batch]
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
        self.generator = OcclusionAwareGenerator(num_channels=channels, num_kp=num_kp, **gen)
        loss = cfg.get("loss", {})
        self.loss_weights = dict(loss.get("weights", {}))
        self.transform_params = dict(loss.get("transform_params", {}))
        # held outside the module tree: loss networks are not part of the method's checkpoint
        self._loss = [ReconstructionLoss(str(loss.get("reconstruction", "auto")), float(loss.get("ssim", 1.0)),
                                         int(loss.get("scales", 4)))]
        self.cfg["reconstruction_backend"] = self._loss[0].backend  # recorded in the run's resolved config
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
            tps = RandomTPS(driving.shape[0], like=driving, **self.transform_params)
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
        ckpt = load_torch_file(path, trust)
        if not isinstance(ckpt, dict) or not all(k in ckpt for k in RELEASE_NAME_MAP):
            found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
            raise CheckpointError(f"{path} is not a FOMM release checkpoint (found keys {found})",
                                  hint="expected top-level keys 'generator' and 'kp_detector', as in vox-cpk.pth.tar")
        notes = [f"{k}: {RELEASE_IGNORED.get(k, 'unknown key, not loaded')}" for k in ckpt if k not in RELEASE_NAME_MAP]
        for release_key, attr in RELEASE_NAME_MAP.items():
            module: nn.Module = getattr(self, attr)
            notes += _load_strict(module, ckpt[release_key], release_key, path)
        return notes


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, path: str) -> list[str]:
    """Copy ``state`` into ``module``; every name and shape must match, except BatchNorm ``num_batches_tracked``,
    which old releases may lack (left at its current value, reported)."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ours]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(ours[k].shape)}" for k in ours
             if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise CheckpointError(f"{path} [{prefix}] does not match this FOMM configuration — {'; '.join(parts)}",
                              hint="use the profile the release was trained with (paper = vox-256)")
    defaulted = [k for k in ours if k not in state]
    module.load_state_dict({**ours, **state}, strict=True)
    return [f"{prefix}.{k}: absent in release, kept default" for k in defaulted]
