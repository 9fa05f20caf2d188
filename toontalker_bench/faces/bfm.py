"""Fit the 3DDFA BFM landmark subspace to 68 2-D landmarks: head rotation and a 10-D expression code.

Model: ``X = mean + W_shp @ alpha + W_exp @ beta`` (68 x 3, BFM units, y up, z towards the camera), projected with a
scaled orthographic camera ``x = s * R[:2] @ X + t`` after flipping image y to point up. The fit alternates a
closed-form camera step (least-squares affine camera, projected onto the nearest scaled rotation) with a ridge step
for ``alpha, beta`` under a Gaussian prior (the 3DDFA parameter whitening statistics), batched over frames.

Jaw contour (``contour``): the BFM's points 0-16 are fixed surface points, while a landmarker such as dlib puts them on
the visible silhouette, which slides sideways across the cheek as the head turns. ``"full"`` fits them like any other
point (3DDFA's convention, and what the demo-corpus renderer uses); ``"vertical"`` lets them constrain only the
image-vertical coordinate (the height of the jaw line and the chin still fix pitch, their horizontal position no
longer pulls yaw); ``"inner"`` drops them (51 points). ``shared_shape=True`` fits one identity (shape) code for the
whole sequence and an expression code per frame (a standard video-fitting practice). docs/metrics-validation.md
measures each choice against ground truth.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import require
from ..core import exact

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


CONTOURS = ("full", "vertical", "inner")
BACKEND = "bfm3ddfa"  # contour "full", per-frame shape: the estimator as first released


def contour_weights(contour: str) -> np.ndarray:
    """``(68, 2)`` weight of each landmark's image x and y in the fit for a jaw-contour mode of :data:`CONTOURS`."""
    if contour not in CONTOURS:
        raise ValueError(f"contour must be one of {CONTOURS}, got {contour!r}")
    w = np.ones((68, 2))
    if contour == "vertical":
        w[:17, 0] = 0.0
    elif contour == "inner":
        w[:17] = 0.0
    return w


def backend_name(contour: str = "full", shared_shape: bool = False) -> str:
    """The motion-backend name of a fit setting: ``bfm3ddfa`` (full contour), ``bfm3ddfa-jaw-y`` (vertical),
    ``bfm3ddfa-inner51``; ``+seqshape`` when one shape code is shared by the sequence."""
    base = {"full": BACKEND, "vertical": "bfm3ddfa-jaw-y", "inner": "bfm3ddfa-inner51"}[contour]
    return base + ("+seqshape" if shared_shape else "")


class BFM:
    """The 68-point BFM subspace of 3DDFA (files ``u_shp.npy u_exp.npy w_shp_sim.npy w_exp_sim.npy
    keypoints_sim.npy param_whitening.pkl``); ``contour`` says how the jaw-contour points enter the fit (see the
    module docstring). The default ``"full"`` is 3DDFA's and the demo-corpus renderer's convention."""

    def __init__(self, root: str | Path | None = None, noise: float = 0.02, iters: int = 15,
                 contour: str = "full") -> None:
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
        self.contour = contour
        self.weights = contour_weights(contour)

    def backend(self, shared_shape: bool = False) -> str:
        return backend_name(self.contour, shared_shape)

    def points(self, z: np.ndarray) -> np.ndarray:
        """``(B, 50)`` whitened shape + expression codes -> ``(B, 68, 3)`` model points (BFM frame)."""
        return self.mean + np.einsum("pck,bk->bpc", self.basis, z)

    def fit(self, landmarks: np.ndarray, shared_shape: bool = False) -> BFMFit:
        """``landmarks`` (B, 68, 2) image pixels (y down) -> :class:`BFMFit`.

        ``shared_shape``: the B frames show one face; one shape code is fitted to all of them (each frame keeps its own
        camera and expression code).
        """
        y = np.asarray(landmarks, np.float64).copy()
        b = len(y)
        y[..., 1] *= -1
        k = N_SHAPE + N_EXP
        w = self.weights
        sw = np.sqrt(w).reshape(-1)
        z = np.zeros((b, k))
        for _ in range(self.iters):
            r2, s, t = _camera(self.points(z), y, w)
            # ridge step: y - t - s R2 mean = s R2 B z  ->  (D^T D / noise^2 + I) z = D^T r / noise^2 (rows weighted)
            d = np.einsum("bij,pjk->bpik", r2, self.basis).reshape(b, -1, k) * sw[:, None]
            rhs = ((y - t[:, None]) / s[:, None, None] - np.einsum("bij,pj->bpi", r2, self.mean)).reshape(b, -1) * sw
            a = np.einsum("bnk,bnl->bkl", d, d) / self.noise**2
            g = np.einsum("bnk,bn->bk", d, rhs) / self.noise**2
            z = _solve_shared(a, g) if shared_shape else np.linalg.solve(a + np.eye(k), g[..., None])[..., 0]
        x = self.points(z)
        r2, s, t = _camera(x, y, w)
        proj = s[:, None, None] * np.einsum("bij,bpj->bpi", r2, x) + t[:, None]
        if self.contour == "full":  # the released formula, kept bit for bit (the demo-corpus heads depend on it)
            rms = np.sqrt(((proj - y) ** 2).sum(-1).mean(-1))
        else:
            rms = np.sqrt(2 * (w * (proj - y) ** 2).sum((1, 2)) / w.sum())
        iod = s * np.linalg.norm(self.mean[45] - self.mean[36])
        rot = _rotation(r2)
        return BFMFit(euler_degrees(rot), z[:, N_SHAPE:], z[:, :N_SHAPE], rot, s, t, rms / iod)

    def estimate(self, landmarks68: np.ndarray, extra: dict[str, Any] | None = None,
                 shared_shape: bool = False) -> MotionEstimate:
        """Fit every frame whose 68 landmarks are all finite; the others stay NaN (``ok`` False)."""
        t = len(landmarks68)
        has = np.isfinite(landmarks68).all(axis=(1, 2))
        angles = np.full((t, 3), np.nan)
        exp = np.full((t, N_EXP), np.nan)
        extra = dict(extra or {})
        if has.any():
            fit = self.fit(landmarks68[has], shared_shape=shared_shape)
            angles[has], exp[has] = fit.angles, fit.exp
            extra["fit_residual_median"] = float(np.median(fit.residual))
        return MotionEstimate(angles, exp, has, self.backend(shared_shape), extra)


@functools.cache
def default_bfm() -> BFM:
    """The BFM with default settings (full contour), its files read once per process."""
    return BFM()


@functools.cache
def get_bfm(contour: str = "full") -> BFM:
    """A BFM with the given jaw-contour mode, read once per process and mode."""
    return default_bfm() if contour == "full" else BFM(contour=contour)


def _solve_shared(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Ridge step with one shape code for all B frames: minimise ``sum_b z_b^T a_b z_b / 2 - g_b^T z_b`` plus the unit
    prior, with ``z_b = (alpha, beta_b)``. The per-frame expression blocks are eliminated (Schur complement)."""
    sh, ex = slice(0, N_SHAPE), slice(N_SHAPE, N_SHAPE + N_EXP)
    inv = np.linalg.inv(a[:, ex, ex] + np.eye(N_EXP))
    a_se = a[:, sh, ex]
    reduced = (a[:, sh, sh] - a_se @ inv @ a_se.transpose(0, 2, 1)).sum(0) + np.eye(N_SHAPE)
    rhs = (g[:, sh] - np.einsum("bij,bjk,bk->bi", a_se, inv, g[:, ex])).sum(0)
    alpha = np.linalg.solve(reduced, rhs)
    beta = np.einsum("bij,bj->bi", inv, g[:, ex] - np.einsum("bji,j->bi", a_se, alpha))
    return np.concatenate([np.broadcast_to(alpha, (len(g), N_SHAPE)), beta], axis=1)


def orthographic_pose(model: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A rigid model's points ``(P, 3)`` (BFM frame: x right, y up, z to the camera) and their images ``(B, P, 2)``
    (pixels, y down) -> ``(B, 3)`` yaw, pitch, roll in degrees: the fit's scaled orthographic camera step alone, for
    a model without shape or expression codes (MediaPipe's canonical face mesh)."""
    y = np.asarray(image, np.float64).copy()
    y[..., 1] *= -1
    r2, _, _ = _camera(np.broadcast_to(np.asarray(model, np.float64), (len(y), *np.shape(model))), y)
    return euler_degrees(_rotation(r2))


def _rotation(r2: np.ndarray) -> np.ndarray:
    """The camera's two rows ``(B, 2, 3)`` completed to rotations ``(B, 3, 3)``."""
    return np.concatenate([r2, np.cross(r2[:, 0], r2[:, 1])[:, None]], axis=1)


def _camera(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares affine camera, projected to the nearest scaled orthographic one: rows of R (B,2,3), s, t.

    ``w`` (P, 2): weight of each point's image x and y (each image row of the camera is its own weighted fit). All
    ones (or None) takes the unweighted path, whose arithmetic is the released estimator's, bit for bit.
    """
    if w is None or (w == 1).all():
        xm = x.mean(1, keepdims=True)
        xc = x - xm
        yc = y - y.mean(1, keepdims=True)
        aff = np.linalg.solve(np.einsum("bpi,bpj->bij", xc, xc), np.einsum("bpi,bpj->bij", xc, yc)).transpose(0, 2, 1)
    else:
        xh = np.concatenate([x, np.ones(x.shape[:2] + (1,))], axis=2)  # (B, P, 4): affine with intercept
        rows = []
        for i in range(2):
            a = np.einsum("p,bpi,bpj->bij", w[:, i], xh, xh)
            rows.append(np.linalg.solve(a, np.einsum("p,bpi,bp->bi", w[:, i], xh, y[..., i])[..., None])[:, :3, 0])
        aff = np.stack(rows, axis=1)
    u, sv, vt = np.linalg.svd(aff, full_matrices=False)  # (B,2,2), (B,2), (B,2,3)
    r2 = u @ vt
    s = sv.mean(1)
    if w is None or (w == 1).all():
        t = y.mean(1) - s[:, None] * np.einsum("bij,bj->bi", r2, x.mean(1))
    else:
        t = ((y - s[:, None, None] * np.einsum("bij,bpj->bpi", r2, x)) * w).sum(1) / w.sum(0)
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
    """Inverse of :func:`euler_degrees`: degrees in, (B, 3, 3) BFM-frame rotations out (CPU-independent bits: the
    demo corpus renders its real heads with it)."""
    y, p, r = (np.radians(np.atleast_1d(np.asarray(v, np.float64))) for v in (yaw, pitch, roll))
    one, zero = np.ones_like(y), np.zeros_like(y)
    cy, sy, cp, sp, cr, sr = exact.cos(y), exact.sin(y), exact.cos(p), exact.sin(p), exact.cos(r), exact.sin(r)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rp = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    rr = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return exact.matmul(exact.matmul(_FLIP_Y, exact.matmul(exact.matmul(rr, rp), ry)), _FLIP_Y)
