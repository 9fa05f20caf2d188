"""Fit the 3DDFA BFM landmark subspace to 68 2-D landmarks: head rotation and a 10-D expression code.

Model: ``X = mean + W_shp @ alpha + W_exp @ beta`` (68 x 3, BFM units, y up, z towards the camera), projected with a
scaled orthographic camera ``x = s * R[:2] @ X + t`` after flipping image y to point up. The fit alternates a
closed-form camera step (least-squares affine camera, projected onto the nearest scaled rotation) with a ridge step
for ``alpha, beta`` under a Gaussian prior (the 3DDFA parameter whitening statistics), batched over frames.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import require

N_SHAPE = 40
N_EXP = 10


@dataclass
class BFMFit:
    angles: np.ndarray  # (B, 3) yaw, pitch, roll in degrees (toontalker_bench.faces.pose conventions)
    exp: np.ndarray  # (B, 10) expression code in prior standard deviations
    shape: np.ndarray  # (B, 40) identity code in prior standard deviations
    rotation: np.ndarray  # (B, 3, 3)
    scale: np.ndarray  # (B,) pixels per BFM unit
    translation: np.ndarray  # (B, 2) pixels, y up
    residual: np.ndarray  # (B,) RMS landmark error divided by the fitted face size (inter-ocular distance)


@dataclass
class MotionEstimate:
    """Per-frame head motion of a frame sequence, as the motion metrics and the pose labels use it."""

    angles: np.ndarray  # (T, 3) yaw, pitch, roll degrees; NaN where not usable
    exp: np.ndarray  # (T, D) expression code; NaN where not usable
    ok: np.ndarray  # (T,) bool
    backend: str
    extra: dict[str, Any] = field(default_factory=dict)


class BFM:
    """The 68-point BFM subspace of 3DDFA (files ``u_shp.npy u_exp.npy w_shp_sim.npy w_exp_sim.npy
    keypoints_sim.npy param_whitening.pkl``)."""

    def __init__(self, root: str | Path | None = None, noise: float = 0.02, iters: int = 15) -> None:
        root = Path(root) if root is not None else require("bfm-3ddfa", "AED/APD (3DMM fit)")
        kp = np.load(root / "keypoints_sim.npy")
        mean = np.load(root / "u_shp.npy") + np.load(root / "u_exp.npy")
        self.mean = mean[kp].reshape(68, 3).astype(np.float64)
        w_shp = np.load(root / "w_shp_sim.npy")[kp].reshape(68, 3, -1)
        w_exp = np.load(root / "w_exp_sim.npy")[kp].reshape(68, 3, -1)
        with open(root / "param_whitening.pkl", "rb") as f:
            meta = pickle.load(f)  # noqa: S301 - numeric arrays shipped with the model files
        mu = np.asarray(meta["param_mean"], np.float64)[12:]
        sd = np.asarray(meta["param_std"], np.float64)[12:]
        # Work in whitened coordinates z = (p - mu) / sd so the prior is N(0, I).
        w = np.concatenate([w_shp, w_exp], axis=2).astype(np.float64)
        self.mean = self.mean + w @ mu
        self.basis = w * sd  # (68, 3, 50)
        iod = np.linalg.norm(self.mean[45] - self.mean[36])
        self.noise = noise * iod  # landmark noise in BFM units, relative to the inter-ocular distance
        self.iters = iters

    def fit(self, landmarks: np.ndarray) -> BFMFit:
        """``landmarks`` (B, 68, 2) image pixels (y down) -> :class:`BFMFit`."""
        y = np.asarray(landmarks, np.float64).copy()
        b = len(y)
        y[..., 1] *= -1
        z = np.zeros((b, N_SHAPE + N_EXP))
        yc = y - y.mean(1, keepdims=True)
        eye = np.eye(N_SHAPE + N_EXP)
        for _ in range(self.iters):
            x = self.mean + np.einsum("pck,bk->bpc", self.basis, z)
            r2, s, t = _camera(x, y, yc)
            # ridge step: y - t - s R2 mean = s R2 B z  ->  (D^T D / noise^2 + I) z = D^T r / noise^2
            d = np.einsum("bij,pjk->bpik", r2, self.basis).reshape(b, -1, N_SHAPE + N_EXP)
            rhs = ((y - t[:, None]) / s[:, None, None] - np.einsum("bij,pj->bpi", r2, self.mean)).reshape(b, -1)
            a = np.einsum("bnk,bnl->bkl", d, d) / self.noise**2 + eye
            z = np.linalg.solve(a, np.einsum("bnk,bn->bk", d, rhs)[..., None] / self.noise**2)[..., 0]
        x = self.mean + np.einsum("pck,bk->bpc", self.basis, z)
        r2, s, t = _camera(x, y, yc)
        proj = s[:, None, None] * np.einsum("bij,bpj->bpi", r2, x) + t[:, None]
        rms = np.sqrt(((proj - y) ** 2).sum(-1).mean(-1))
        iod = s * np.linalg.norm(self.mean[45] - self.mean[36])
        r3 = np.cross(r2[:, 0], r2[:, 1])
        rot = np.concatenate([r2, r3[:, None]], axis=1)
        return BFMFit(euler_degrees(rot), z[:, N_SHAPE:], z[:, :N_SHAPE], rot, s, t, rms / iod)


    def estimate(self, landmarks68: np.ndarray, extra: dict[str, Any] | None = None) -> MotionEstimate:
        """Fit every frame whose 68 landmarks are all finite; the others stay NaN (``ok`` False)."""
        t = len(landmarks68)
        has = np.isfinite(landmarks68).all(axis=(1, 2))
        angles = np.full((t, 3), np.nan)
        exp = np.full((t, N_EXP), np.nan)
        extra = dict(extra or {})
        if has.any():
            fit = self.fit(landmarks68[has])
            angles[has], exp[has] = fit.angles, fit.exp
            extra["fit_residual_median"] = float(np.median(fit.residual))
        return MotionEstimate(angles, exp, has, BACKEND, extra)


BACKEND = "bfm3ddfa"


@functools.cache
def default_bfm() -> BFM:
    """The BFM with default settings, its files read once per process."""
    return BFM()


def _camera(x: np.ndarray, y: np.ndarray, yc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares affine camera, projected to the nearest scaled orthographic one: rows of R (B,2,3), s, t."""
    xm = x.mean(1, keepdims=True)
    xc = x - xm
    aff = np.linalg.solve(np.einsum("bpi,bpj->bij", xc, xc), np.einsum("bpi,bpj->bij", xc, yc)).transpose(0, 2, 1)
    u, sv, vt = np.linalg.svd(aff, full_matrices=False)  # (B,2,2), (B,2), (B,2,3)
    r2 = u @ vt
    s = sv.mean(1)
    t = (y.mean(1) - s[:, None] * np.einsum("bij,bj->bi", r2, xm[:, 0]))
    return r2, s, t


_FLIP_Y = np.diag([1.0, -1.0, 1.0])


def euler_degrees(rot: np.ndarray) -> np.ndarray:
    """Rotations in the BFM frame (x right, y up, z to the camera) -> yaw, pitch, roll in degrees.

    The project's convention (:mod:`toontalker_bench.faces.pose`, :func:`toontalker_bench.data.synth.cartoon.rotation`) is
    ``R = R_roll @ R_pitch @ R_yaw`` in image axes (y down): yaw > 0 moves the nose to the image's right, pitch > 0
    lifts the chin, roll > 0 turns the face clockwise on screen.
    """
    r = _FLIP_Y @ rot @ _FLIP_Y
    pitch = np.arcsin(np.clip(r[:, 2, 1], -1.0, 1.0))
    yaw = np.arctan2(-r[:, 2, 0], r[:, 2, 2])
    roll = np.arctan2(-r[:, 0, 1], r[:, 1, 1])
    return np.degrees(np.stack([yaw, pitch, roll], axis=1))


def rotation_from_euler(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_degrees`: degrees in, (B, 3, 3) BFM-frame rotations out."""
    y, p, r = (np.radians(np.atleast_1d(np.asarray(v, np.float64))) for v in (yaw, pitch, roll))
    one, zero = np.ones_like(y), np.zeros_like(y)
    ry = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], -1).reshape(-1, 3, 3)
    rp = np.stack([one, zero, zero, zero, np.cos(p), -np.sin(p), zero, np.sin(p), np.cos(p)], -1).reshape(-1, 3, 3)
    rr = np.stack([np.cos(r), -np.sin(r), zero, np.sin(r), np.cos(r), zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return _FLIP_Y @ (rr @ rp @ ry) @ _FLIP_Y
