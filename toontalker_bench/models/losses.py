"""Training losses shared by the learned methods.

- :class:`ReconstructionLoss`: VGG19 perceptual loss when the ``vgg19-perceptual`` asset is present, otherwise
  multi-scale L1 + (1 - SSIM). Its ``backend`` string says which one ran; methods record it in the run config.
- StyleGAN2-style adversarial terms: :func:`g_nonsaturating`, :func:`d_logistic`, :func:`r1_penalty`.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AssetError
from ..models.blocks import multiscale_l1, ssim

log = logging.getLogger(__name__)

VGG_ASSET = "vgg19-perceptual"
_VGG_LAYERS = (2, 7, 12, 21, 30)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19.features
_VGG_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _find_vgg_weights() -> str | None:
    """Path of the VGG19 weights file, or None when the asset registry is absent or lacks the file."""
    try:
        from ..assets import require
    except ImportError:
        return None
    try:
        return str(require(VGG_ASSET))
    except AssetError as e:
        log.info("perceptual loss unavailable (%s); using multi-scale L1 + SSIM", e)
        return None


class _VGGFeatures(nn.Module):
    def __init__(self, weights_path: str) -> None:
        super().__init__()
        from torchvision.models import vgg19

        net = vgg19()
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.features = net.features[: _VGG_LAYERS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG_LAYERS:
                out.append(x)
        return out


class ReconstructionLoss(nn.Module):
    """Image reconstruction loss on images in [0, 1].

    ``mode``: ``auto`` (perceptual if the VGG19 asset is present, else L1+SSIM), ``perceptual`` (asset required),
    or ``l1_ssim``. The perceptual variant uses a 3-level image pyramid, as LIA/FOMM do.
    """

    def __init__(self, mode: str = "auto", ssim_weight: float = 1.0, scales: int = 3) -> None:
        super().__init__()
        if mode not in ("auto", "perceptual", "l1_ssim"):
            raise AssetError(f"unknown reconstruction loss {mode!r}", hint="use auto, perceptual or l1_ssim")
        self.ssim_weight = float(ssim_weight)
        self.scales = int(scales)
        self.vgg: _VGGFeatures | None = None
        if mode != "l1_ssim":
            path = _find_vgg_weights()
            if path is None and mode == "perceptual":
                raise AssetError(f"the {VGG_ASSET} asset is needed for the perceptual loss",
                                 hint=f"run `toontalker-bench assets fetch {VGG_ASSET}` or set loss.reconstruction=auto")
            if path is not None:
                self.vgg = _VGGFeatures(path)

    @property
    def backend(self) -> str:
        return "vgg19-perceptual" if self.vgg is not None else f"multiscale-l1+ssim(w={self.ssim_weight:g})"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.vgg is None:
            loss = multiscale_l1(output, target, self.scales)
            if self.ssim_weight:
                loss = loss + self.ssim_weight * (1 - ssim(output, target)).mean()
            return loss
        total = output.new_zeros(())
        x, y = output, target
        for i in range(self.scales):
            if i:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            with torch.no_grad():
                fy = self.vgg(y)
            for w, a, b in zip(_VGG_WEIGHTS, self.vgg(x), fy):
                total = total + w * (a - b).abs().mean()
        return total / self.scales


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
