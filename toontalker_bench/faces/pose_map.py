"""Pose vectors (:mod:`.pose`) estimated from frames: a 3DMM fit per frame mapped by a ridge regression.

Real footage has no pose vectors; the AnimeCeleb-style baseline and the pseudo labels of the trainer estimate them
with :func:`pose_features` (yaw/pitch/roll + 10-D expression of the BFM fit) and a :class:`PoseVectorMap` fitted on
frames whose pose vector is known.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .pose import N_MORPHS, POSE_DIM

N_FEATURES = 13  # 3DMM fit per frame: yaw, pitch, roll (degrees) + 10-D expression

#: ``frames (T, 3, H, W) in [0, 1] -> (T, 13)`` yaw/pitch/roll + expression, NaN rows where no face was fitted.
PoseEstimator = Callable[[torch.Tensor], np.ndarray]


# ----------------------------------------------------------------------------------------------- pose features
class BFMPoseEstimator:
    """The 3DMM fit the motion metrics use: face box + dlib 68 landmarks, then the 3DDFA BFM subspace (10-D expression)."""

    def __init__(self, size: int = 256) -> None:
        from .analyzer import FaceAnalyzer
        from .bfm import default_bfm

        self.size = size
        self.faces = FaceAnalyzer()
        self.fit = default_bfm()

    def __call__(self, frames: torch.Tensor) -> np.ndarray:
        x = frames.detach().float().cpu()
        if x.shape[-1] != self.size:  # landmarkers want faces of a few hundred pixels, not 64 px crops
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        u8 = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        est = self.fit.estimate(self.faces.track(u8, desc="3DMM fit").landmarks68)
        return np.concatenate([est.angles, est.exp], axis=1)


_ESTIMATOR: PoseEstimator | None = None


def pose_features(frames: torch.Tensor) -> np.ndarray:
    """``(T, 13)`` 3DMM pose + expression per frame with the default estimator (loaded once per process)."""
    global _ESTIMATOR
    if _ESTIMATOR is None:
        _ESTIMATOR = BFMPoseEstimator()
    return _ESTIMATOR(frames)


class PoseVectorMap(nn.Module):
    """Ridge regression ``features (13) -> pose vector (20)`` from accumulated sufficient statistics.

    Statistics (count, sums, cross-products; float64 buffers, saved in checkpoints) accumulate with :meth:`update`;
    :meth:`forward` solves the standardised ridge problem ``(Cxx + ridge * diag(Cxx)) W = Cxy``.
    """

    def __init__(self, n_in: int = N_FEATURES, n_out: int = POSE_DIM, ridge: float = 1e-3) -> None:
        super().__init__()
        self.ridge = ridge
        self.register_buffer("n", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sx", torch.zeros(n_in, dtype=torch.float64))
        self.register_buffer("sy", torch.zeros(n_out, dtype=torch.float64))
        self.register_buffer("sxx", torch.zeros(n_in, n_in, dtype=torch.float64))
        self.register_buffer("sxy", torch.zeros(n_in, n_out, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> int:
        """Add the rows where both ``x`` and ``y`` are finite; returns how many were added."""
        x = torch.as_tensor(np.asarray(x, np.float64), device=self.n.device)
        y = torch.as_tensor(np.asarray(y, np.float64), device=self.n.device)
        keep = torch.isfinite(x).all(1) & torch.isfinite(y).all(1)
        x, y = x[keep], y[keep]
        self.n += len(x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.sxx += x.T @ x
        self.sxy += x.T @ y
        return len(x)

    @property
    def fitted(self) -> bool:
        return bool(self.n > self.sx.numel())

    def solve(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W (13, 20), b (20,))``."""
        n = self.n.clamp(min=1)
        mx, my = self.sx / n, self.sy / n
        cxx = self.sxx / n - torch.outer(mx, mx)
        cxy = self.sxy / n - torch.outer(mx, my)
        d = torch.diagonal(cxx).clamp(min=1e-12)
        w = torch.linalg.solve(cxx + torch.diag(self.ridge * d + 1e-12), cxy)
        return w, my - mx @ w

    def mean_target(self) -> torch.Tensor:
        return self.sy / self.n.clamp(min=1)

    def forward(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Map ``(T, 13)`` features to ``(T, 20)`` pose vectors (NaN rows stay NaN); morphs clipped to [0, 1]."""
        w, b = self.solve()
        x = torch.as_tensor(np.asarray(x, np.float64), device=w.device)
        y = x @ w + b
        y[:, :N_MORPHS] = y[:, :N_MORPHS].clamp(0, 1)
        return y.float()
