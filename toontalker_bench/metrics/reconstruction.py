"""Reconstruction metrics between generated and driving frames (self-reenactment, where driving is the target).

L1 follows FOMM: mean absolute error of [0, 1] images. PSNR uses data range 1; SSIM is scikit-image's
``structural_similarity`` (Gaussian-free 7x7 window, data range 255, over colour channels). LPIPS is the ``lpips``
package's AlexNet variant (v0.1 linear heads shipped in the package, backbone from the ``lpips-alex`` asset); without
the backbone the value is None with the reason, never computed with a random backbone.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..errors import AssetError
from .base import METRICS, Metric, MetricValue
from .pair import Pair


class _FrameMetric(Metric):
    """Per-frame score of (generated, driving), averaged per pair, then over pairs."""

    def update(self, pair: Pair) -> None:
        gen, drv = pair.frames("generated"), pair.frames("driving")
        scores = self.score(gen, drv)
        self._per_video.append(float(np.mean(scores)))
        self._n_frames += len(scores)

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@METRICS.register("l1", direction="lower")
class L1(_FrameMetric):
    """Mean absolute error between [0, 1] frames (FOMM's L1)."""

    name, direction, backend = "l1", "lower", "numpy"

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        return np.abs(gen.astype(np.float32) - drv.astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0


@METRICS.register("psnr", direction="higher")
class PSNR(_FrameMetric):
    """Peak signal-to-noise ratio in dB (data range 1), per frame, then averaged; identical frames give 100 dB."""

    name, direction, backend = "psnr", "higher", "numpy"

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        mse = ((gen.astype(np.float64) - drv.astype(np.float64)) / 255.0) ** 2
        mse = mse.mean(axis=(1, 2, 3))
        return np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-10)), 100.0)


@METRICS.register("ssim", direction="higher")
class SSIM(_FrameMetric):
    """Structural similarity (scikit-image, colour, data range 255), per frame, then averaged."""

    name, direction, backend = "ssim", "higher", "skimage"

    def score(self, gen: np.ndarray, drv: np.ndarray) -> np.ndarray:
        from skimage.metrics import structural_similarity

        return np.array([structural_similarity(g, d, channel_axis=2, data_range=255) for g, d in zip(gen, drv)])


@functools.cache
def lpips_alex(device: str = "cpu") -> torch.nn.Module:
    """The lpips package's AlexNet LPIPS with the backbone loaded from the ``lpips-alex`` asset (torchvision
    ``alexnet`` ImageNet state dict)."""
    import lpips

    from ..assets import require

    path = require("lpips-alex", "LPIPS")
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("features.")}
    net = model.net
    loaded = 0
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for idx, layer in getattr(net, slice_name).named_children():
            for pname, param in layer.named_parameters(recurse=False):
                param.data.copy_(feats[f"{idx}.{pname}"])
                loaded += 1
    if loaded != 10:
        raise AssetError(f"lpips-alex asset {path} does not hold the 5 AlexNet conv layers",
                         hint="re-import the torchvision alexnet ImageNet weights")
    return model.eval().to(device)


@METRICS.register("lpips", direction="lower")
class LPIPS(_FrameMetric):
    """LPIPS (AlexNet, v0.1) between generated and driving frames; None with a reason when the backbone is missing."""

    name, direction, backend = "lpips", "lower", "lpips-alex-v0.1"

    def __init__(self, device: str = "cpu", batch_size: int = 16) -> None:
        self.device, self.batch_size = device, batch_size
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self._reason: str | None = None

    def update(self, pair: Pair) -> None:
        if self._reason is not None:
            return
        try:
            self._model = lpips_alex(self.device)
        except AssetError as e:
            self._reason = str(e)
            return
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
