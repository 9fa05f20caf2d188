"""Real face photos as textured 3-D heads: true head rotation, exact ground truth.

A photo becomes a head once (cached per process, deterministic):

1. **Fit.** dlib's 68 landmarks of the photo (:func:`.realface.photo_landmarks`) are fitted with the 3DDFA BFM
   subspace (40 shape + 10 expression coefficients and a scaled orthographic camera, :class:`..metrics.bfm.BFM`,
   the project's pose estimator); the dense model (53,215 vertices of the ``bfm-3ddfa`` asset) is evaluated with
   the fitted coefficients. A photo with no face, or whose RMS landmark residual exceeds ``MAX_FIT_RESIDUAL``
   inter-ocular distances, is refused (:class:`FaceFitError`) and never rendered.
2. **Dense refinement.** A thin-plate spline through the residuals of the 51 inner landmarks moves every vertex
   parallel to the photo's image plane, so that those keypoint vertices project exactly onto the photo's
   landmarks and the 3-D nose, eyes and mouth lie under the photo's. The jaw contour keeps the fitted BFM's points
   (dlib puts it on the photo's silhouette, the BFM on fixed surface points).
3. **Mesh.** The face region (inside the jaw contour, up to the top of the BFM mesh, without the steep temples) is
   sampled on a grid of the mean shape's frontal projection (the front-most vertex per cell, so the sample is a
   height field) plus the 68 keypoint vertices, and triangulated with ``scipy.spatial.Delaunay`` together with a
   *surround*: rings of points on a head shell that continues the face's outline round to the sides and the top
   (hair, ears) and turns with the head, then rings that fade to the static photo (neck, shoulders, background: a
   rubber sheet), so the rendered head never tears from its background. Every vertex's texture coordinate is its
   projection into the photo at the fitted photo pose, so rendering at the photo's own pose reproduces the photo.
   Beyond the photo's edges the texture continues with its edge pixels, blurred (:func:`_pad`).

A frame for a 20-D motion vector (:mod:`.motion`):

* **expression**: eyelids (blinks, ``eye_wide``, ``eye_happy``), brows and mouth corners (smile, frown, vowel
  widths) are edited in texture space with the per-pixel maps of :class:`.realface.Expression`, which keeps the
  eyelids sharper than the mesh resolution could; the edit rides on the 3-D surface. The jaw is 3-D: the mesh is
  cut along the line between the lips, everything below it moves down (``mouth_open``, up to 0.22 inter-ocular
  distances, a lens-shaped opening that closes at the corners, fading out below the chin), and the triangles that
  open between the lips show a procedural mouth interior (upper teeth, dark cavity, tongue) instead of the photo;
* **head pose** is a true 3-D rotation ``rotation_from_euler(yaw, pitch, roll)`` (the estimator's convention,
  :mod:`..metrics.bfm`) about a pivot at the top of the neck, projected with the fitted scaled orthographic
  camera; a numpy z-buffered rasteriser gives each pixel its triangle and barycentrics, hence its texture
  coordinate, and one ``cv2.remap`` samples the (edited) photo;
* **ground truth**: the 68 landmarks are the surface points under the (expression-edited) photo landmarks, i.e.
  the keypoint vertices after the jaw drop (moved by the texture-space edits), rotated and projected with the same
  camera, so they follow the pixels by construction; the box follows :func:`.cartoon.box_from_landmarks`;
  yaw/pitch/roll are the rendered rotation.

Head turns are limited to what a frontal photo's texture supports: ``LIMITS`` degrees away from the photo's own
pose (yaw 30, pitch 15, roll 20); :meth:`RealHead.clamp` keeps a motion inside, :meth:`RealHead.render` refuses a
motion outside.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core import exact
from ...core.errors import MediaError
from ...core.exact import matmul, quantize
from ...faces.pose import N_MORPHS, POSE_DIM
from .cartoon import box_from_landmarks

TEX_FACE_PX = 150.0  # brow-to-chin height of the face in the texture (photos are resampled to it)
MAX_FIT_RESIDUAL = 0.06  # RMS landmark residual of the BFM fit, in inter-ocular distances (measured 0.025-0.029)
LIMITS = np.array([30.0, 15.0, 20.0])  # max |yaw|, |pitch|, |roll| away from the photo's pose, degrees
PAD = 64  # texture margin (pixels) around the resampled photo, see _pad
GRID = 0.017  # face-mesh cell, fraction of the jaw width (about 60 cells across the face)
CONTOUR_SCALE = 1.0  # face mesh: inside the jaw contour scaled by this about the face centre ...
TEMPLE_SCALE = 0.9  # ... and, above the contour's ends, inside these scaled temples
SHELL_DEPTH = 0.5  # the shell's rim lies this many jaw widths behind the nose tip (flatter = less stretch)
JAW = 0.5  # mouth_open = 1 drops the jaw by this many inter-ocular distances
MOUTH_TEX = (48, 96)  # procedural mouth interior, rows x columns (rows: 0 = under the upper lip, 1 = full opening)
LOWER_KP = (55, 56, 57, 58, 59, 65, 66, 67)  # landmarks that move with the jaw (lower lip)
UPPER_KP = (48, 49, 50, 51, 52, 53, 54, 60, 61, 62, 63, 64)  # lip landmarks that stay with the upper face
HEAD_VERSION = "3"  # part of the synth hash: bump when the head model or renderer changes


class FaceFitError(MediaError):
    """A photo whose face cannot be made into a head (no face found, fit residual too large)."""


# ----------------------------------------------------------------------------------------------- rasteriser
def rasterize(xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, shape: tuple[int, int],
              attr: np.ndarray | None = None, eps: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """z-buffered triangle rasteriser in numpy.

    ``xy`` (V, 2) pixel coordinates (pixel centres at integers), ``depth`` (V,) larger = nearer the camera, ``tris``
    (T, 3) vertex indices, ``shape`` (h, w). Returns the covered-pixel mask (h, w) and, per covered pixel (in
    row-major order), the vertex attributes ``attr`` (V, k) interpolated with the barycentric coordinates, or, when
    ``attr`` is None, the index of the visible triangle. Each triangle is scanned row by row (the span of each row
    is found from its three edge functions, all triangles at once), so the work is proportional to the covered
    area; the nearest fragment wins, ties go to the lowest fragment index (deterministic).
    """
    h, w = shape
    p = xy[tris]
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    y0 = np.maximum(np.ceil(p[..., 1].min(1)), 0)
    y1 = np.minimum(np.floor(p[..., 1].max(1)), h - 1)
    x0 = np.maximum(np.ceil(p[..., 0].min(1)), 0)
    x1 = np.minimum(np.floor(p[..., 0].max(1)), w - 1)
    ok = np.flatnonzero((y1 >= y0) & (x1 >= x0) & (np.abs(area) > 1e-12))
    if not len(ok):
        return np.zeros((h, w), bool), np.zeros((0,) if attr is None else (0, attr.shape[1]))
    a, b, c, inv = a[ok], b[ok], c[ok], 1.0 / area[ok]
    y0, y1, x0, x1 = y0[ok].astype(np.int64), y1[ok].astype(np.int64), x0[ok], x1[ok]
    coef = []  # barycentric w_i = A x + B y + C (w0 opposite a, w1 opposite b, w2 opposite c)
    for P, Q in ((b, c), (c, a), (a, b)):
        A = (P[:, 1] - Q[:, 1]) * inv
        B = (Q[:, 0] - P[:, 0]) * inv
        coef.append((A, B, -(A * P[:, 0] + B * P[:, 1])))
    nrows = y1 - y0 + 1
    rt = np.repeat(np.arange(len(ok)), nrows)
    ry = (np.arange(int(nrows.sum())) - np.repeat(np.cumsum(nrows) - nrows, nrows) + y0[rt]).astype(np.float64)
    lo, hi = x0[rt], x1[rt]
    for A, B, C in coef:  # the row's span where A x + r >= 0
        Ar, r = A[rt], B[rt] * ry + C[rt] + eps
        pos, neg = Ar > 1e-15, Ar < -1e-15
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = -r / Ar
        lo = np.where(pos, np.maximum(lo, np.ceil(bound)), lo)
        hi = np.where(neg, np.minimum(hi, np.floor(bound)), hi)
        hi = np.where(~(pos | neg) & (r < 0), lo - 1, hi)
    n = np.maximum(hi - lo + 1, 0).astype(np.int64)
    keep = np.flatnonzero(n)
    rt, ry, lo, n = rt[keep], ry[keep], lo[keep], n[keep]
    ti = np.repeat(rt, n)
    px = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)).astype(np.float64) + np.repeat(lo, n)
    py = np.repeat(ry, n)
    w0 = coef[0][0][ti] * px + coef[0][1][ti] * py + coef[0][2][ti]
    w1 = coef[1][0][ti] * px + coef[1][1][ti] * py + coef[1][2][ti]
    tv = tris[ok[ti]]
    dep = depth[tv[:, 2]] + w0 * (depth[tv[:, 0]] - depth[tv[:, 2]]) + w1 * (depth[tv[:, 1]] - depth[tv[:, 2]])
    pix = py.astype(np.int64) * w + px.astype(np.int64)
    zbuf = np.full(h * w, -np.inf)
    np.maximum.at(zbuf, pix, dep)
    win = np.flatnonzero(dep >= zbuf[pix])
    first = np.full(h * w, len(pix), np.int64)
    np.minimum.at(first, pix[win], win)
    hit = first < len(pix)
    f = first[hit]
    if attr is None:
        return hit.reshape(h, w), ok[ti[f]]
    tv, w0, w1 = tv[f], w0[f, None], w1[f, None]
    a2 = attr[tv[:, 2]]
    return hit.reshape(h, w), a2 + w0 * (attr[tv[:, 0]] - a2) + w1 * (attr[tv[:, 1]] - a2)


# ----------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class _Dense:
    mean: np.ndarray  # (N, 3) mean shape + expression, whitening mean folded in (as metrics.bfm.BFM does)
    basis: np.ndarray  # (N, 3, 50) shape + expression bases times the prior standard deviations
    keypoints: np.ndarray  # (68,) vertex indices
    grid: np.ndarray  # vertex indices: front-most vertex per grid cell of the mean shape's frontal projection


@functools.lru_cache(maxsize=1)
def _dense() -> _Dense:
    import pickle

    from ...assets import require

    root = require("bfm-3ddfa", "real-face heads (dense BFM)")
    mean = (np.load(root / "u_shp.npy") + np.load(root / "u_exp.npy")).astype(np.float64).reshape(-1, 3)
    w = np.concatenate([np.load(root / "w_shp_sim.npy"), np.load(root / "w_exp_sim.npy")], 1)
    with open(root / "param_whitening.pkl", "rb") as f:
        meta = pickle.load(f)  # noqa: S301 - numeric arrays shipped with the model files
    mu = np.asarray(meta["param_mean"], np.float64)[12:]
    sd = np.asarray(meta["param_std"], np.float64)[12:]
    mean = mean + matmul(w, mu).reshape(-1, 3)
    basis = (w * sd.astype(np.float32)).reshape(-1, 3, w.shape[1])
    kp = np.load(root / "keypoints_sim.npy")[::3] // 3
    # grid sample of the frontal projection: the front-most (largest z) vertex of each cell
    width = float(mean[kp[16], 0] - mean[kp[0], 0])
    cell = GRID * width
    ij = np.floor(mean[:, :2] / cell).astype(np.int64)
    key = (ij[:, 0] - ij[:, 0].min()) * 100_000 + (ij[:, 1] - ij[:, 1].min())
    order = np.lexsort((-mean[:, 2], key))
    first = np.concatenate([[True], key[order][1:] != key[order][:-1]])
    return _Dense(mean, basis, kp, np.sort(order[first]))


def _pad(img: np.ndarray, pad: int) -> np.ndarray:
    """The photo with a margin for framings that show beyond its edges: its edge pixels stretched outwards and
    blurred more the further out (mirroring the photo, as ``BORDER_REFLECT`` does, would put mirrored copies of the
    face into the background). Beyond the margin, rendering replicates its outer pixels."""
    import cv2

    out = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE).astype(np.float32)
    blur = cv2.GaussianBlur(out, (0, 0), pad / 3, borderType=cv2.BORDER_REPLICATE)
    h, w = img.shape[:2]
    dy = np.maximum(np.maximum(pad - np.arange(h + 2 * pad), np.arange(h + 2 * pad) - (h + pad - 1)), 0)
    dx = np.maximum(np.maximum(pad - np.arange(w + 2 * pad), np.arange(w + 2 * pad) - (w + pad - 1)), 0)
    wgt = np.clip(np.hypot(dy[:, None], dx[None, :]) / (0.6 * pad), 0, 1)[..., None]
    return np.ascontiguousarray(np.clip(out * (1 - wgt) + blur * wgt + 0.5, 0, 255).astype(np.uint8))


def _tps(src: np.ndarray, val: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Thin-plate spline through ``val`` at ``src`` (2-D points), evaluated at ``at``."""
    from scipy.interpolate import RBFInterpolator

    return RBFInterpolator(src, val, kernel="thin_plate_spline", degree=1)(at)


def _inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    return MplPath(poly).contains_points(pts)


@dataclass(frozen=True)
class Framing:
    """Where the head goes on the canvas: texture pixel ``p`` is drawn at ``scale * p + offset`` (photo pose)."""

    scale: float
    offset: tuple[float, float]


@dataclass(frozen=True)
class _Jaw:
    """The cut between the lips and the jaw-drop field, in the model frame (y up)."""

    line_x: np.ndarray  # the line between the lips (increasing x) ...
    line_y: np.ndarray  # ... and its height
    cx: float  # mouth centre x
    hw: float  # half the mouth width (outer corners)
    iod: float  # inter-ocular distance (model units)
    chin_y: float

    def drop(self, x: np.ndarray, y: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """Downward displacement per unit jaw drop (>= 0) of points (x, y) (``lower``: below the cut)."""
        d = np.interp(x, self.line_x, self.line_y) - y  # > 0 below the line
        off = np.abs(x - self.cx) - self.hw
        g = exact.exp(-0.5 * ((x - self.cx) / (1.1 * self.iod)) ** 2)
        fall = np.clip(1 - (self.chin_y - y) / (0.7 * self.iod), 0, 1)
        t = np.clip(d / (0.3 * self.iod + np.maximum(off, 0)), 0, 1)
        ramp = t * t * (3 - 2 * t)
        taper = np.sqrt(np.clip(1 - ((x - self.cx) / self.hw) ** 2, 0, 1))
        inside = np.where(lower, taper + (1 - taper) * ramp, 0.0)
        return g * fall * np.where(off <= 0, inside, ramp)


@dataclass
class RealHead:
    """A textured 3-D head made from one photo. Build it with :meth:`from_photo`; draw it with :meth:`render`.

    Vertices: the BFM face (the 68 keypoints first), the surround, then copies of the vertices of the triangles
    that open between the lips (``mouth`` = 1: they show the mouth interior once the jaw drops).
    """

    name: str
    identity: str
    texture: np.ndarray  # (H, W, 3) uint8, the photo resampled so the face is TEX_FACE_PX tall
    landmarks: np.ndarray  # (68, 2) dlib landmarks in texture pixels
    pose0: np.ndarray  # (3,) yaw, pitch, roll of the photo (degrees)
    residual: float  # RMS landmark residual of the BFM fit / inter-ocular distance
    verts: np.ndarray  # (V, 3) neutral model-frame positions (BFM frame: x right, y up, z to the camera)
    uv: np.ndarray  # (V, 2) texture coordinates (pixels)
    weight: np.ndarray  # (V,) 1 = turns with the head, 0 = static background, between: rubber sheet
    lower: np.ndarray  # (V,) below the cut between the lips (moves with the jaw)
    mouth: np.ndarray  # (V,) 1 for the vertices of the opening triangles
    mouth_u: np.ndarray  # (V,) across the mouth interior texture, 0..1
    tris: np.ndarray  # (T, 3)
    jaw: _Jaw
    mouth_texture: np.ndarray  # (MOUTH_TEX..., 3) float32 RGB
    rot0: np.ndarray  # (3, 3) photo rotation (BFM frame)
    scale0: float  # texture pixels per BFM unit
    trans0: np.ndarray  # (2,) camera translation (texture pixels, y up)
    pivot: np.ndarray  # (3,) centre of rotation, model frame
    far: float  # depth given to the static background
    _uv_tri: np.ndarray = field(repr=False)  # (H, W) visible triangle per texel at the photo pose (-1: none)
    _lift_ok: np.ndarray = field(repr=False)  # (68, T) triangles landmark k may be lifted onto
    _moving: np.ndarray = field(repr=False)  # triangle indices with a moving vertex
    _used: np.ndarray = field(init=False, repr=False)  # vertices of the moving triangles
    _tree: Any = field(default=None, init=False, repr=False)  # k-d tree of the texture coordinates
    _vt: Any = field(default=None, init=False, repr=False)  # triangles of each vertex (CSR)
    _mtris: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mtris = self.tris[self._moving]
        self._used = np.unique(self._mtris)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_photo(cls, name: str) -> RealHead:
        """The head of photo ``name`` (a key of :data:`.realface.PHOTOS`), built once per process."""
        return _head(name)

    @property
    def face_height(self) -> float:
        """Brow-to-chin height of the face in texture pixels (``TEX_FACE_PX``)."""
        return float(self.landmarks[8, 1] - self.landmarks[17:27, 1].min())

    def framing(self, size: tuple[int, int], centre: tuple[float, float] | None = None,
                face_px: float | None = None) -> Framing:
        """Framing that puts the face (landmark centroid at the photo pose) at ``centre`` (default: the canvas
        centre), ``face_px`` brow-to-chin pixels tall (default: 0.34 of the canvas height)."""
        w, h = size
        face_px = 0.34 * h if face_px is None else face_px
        cx, cy = (w / 2, h / 2) if centre is None else centre
        f = face_px / self.face_height
        m = self.landmarks.mean(0)
        return Framing(f, (cx - f * m[0], cy - f * m[1]))

    def clamp(self, motion: np.ndarray) -> np.ndarray:
        """``motion`` (20,) or (T, 20) with morphs clipped to [0, 1] and angles to the supported range."""
        m = np.array(motion, np.float64, copy=True)
        m[..., :N_MORPHS] = np.clip(m[..., :N_MORPHS], 0, 1)
        m[..., N_MORPHS:] = np.clip(m[..., N_MORPHS:], self.pose0 - LIMITS, self.pose0 + LIMITS)
        return m

    # ------------------------------------------------------------------ rendering
    def project(self, angles: np.ndarray, framing: Framing, shift: tuple[float, float] = (0.0, 0.0),
                mouth_open: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Canvas positions (V, 2) and depths (V,) of the vertices for head angles (yaw, pitch, roll, degrees) and
        jaw opening; ``shift`` (canvas pixels) moves the head (not the background)."""
        from ...faces.bfm import rotation_from_euler

        verts = self.verts
        if mouth_open > 0:
            verts = verts.copy()
            verts[:, 1] -= JAW * self.jaw.iod * mouth_open * self._drop
        rot = rotation_from_euler(*angles)[0]
        cam = matmul(verts - self.pivot, rot.T) + matmul(self.rot0, self.pivot)
        moved = np.stack([self.scale0 * cam[:, 0] + self.trans0[0], -(self.scale0 * cam[:, 1] + self.trans0[1])], 1)
        wgt = self.weight[:, None]
        pos = wgt * moved + (1 - wgt) * self.uv
        xy = framing.scale * pos + np.asarray(framing.offset) + wgt * np.asarray(shift, np.float64)
        depth = self.weight * cam[:, 2] + (1 - self.weight) * self.far
        return xy, depth

    @functools.cached_property
    def _drop(self) -> np.ndarray:
        return self.jaw.drop(self.verts[:, 0], self.verts[:, 1], self.lower)

    def render(self, motion: np.ndarray, size: tuple[int, int], framing: Framing | None = None,
               shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame for ``motion`` (20,: 17 morphs in [0, 1], then absolute yaw, pitch, roll in degrees).

        ``size`` is (width, height); ``framing`` defaults to :meth:`framing` of ``size``; ``shift`` moves the head
        over the background (canvas pixels). Returns the frame (h, w, 3) uint8, the 68 ground-truth landmarks
        (68, 2) in canvas pixels and the face box (4,). Deterministic. Raises ValueError for angles outside
        :meth:`clamp`'s range.
        """
        import cv2

        m = np.asarray(motion, np.float64)
        if m.shape != (POSE_DIM,) or not np.isfinite(m).all():
            raise ValueError(f"motion must be 20 finite values, got shape {m.shape}")
        if (np.abs(m[N_MORPHS:] - self.pose0) - LIMITS > 1e-6).any():
            raise ValueError(f"head angles {m[N_MORPHS:].round(2).tolist()} lie outside the range this photo supports "
                             f"({(self.pose0 - LIMITS).round(1).tolist()} to "
                             f"{(self.pose0 + LIMITS).round(1).tolist()}); "
                             "use RealHead.clamp")
        w, h = size
        fr = framing or self.framing(size)
        morphs = np.clip(m[:N_MORPHS], 0, 1)
        opening = float(morphs[_MOUTH_OPEN])
        tex, lm_e = self._expression(morphs)
        xy, depth = self.project(m[N_MORPHS:], fr, shift, opening)
        # static background: canvas pixel q shows texture pixel (q - offset) / scale
        gx = (np.arange(w, dtype=np.float32) - np.float32(fr.offset[0])) / np.float32(fr.scale)
        gy = (np.arange(h, dtype=np.float32) - np.float32(fr.offset[1])) / np.float32(fr.scale)
        mapx = np.repeat(gx[None, :], h, 0)
        mapy = np.repeat(gy[:, None], w, 1)
        used = xy[self._used]
        x0, y0 = (max(int(math.floor(v)), 0) for v in used.min(0))
        x1, y1 = int(min(math.ceil(used[:, 0].max()) + 1, w)), int(min(math.ceil(used[:, 1].max()) + 1, h))
        mouth = None
        if x1 > x0 and y1 > y0:
            # attributes: texture u, v; mouth flag; mouth-interior u, v (v: the opening, 1 = a full jaw drop)
            attr = np.stack([self.uv[:, 0], self.uv[:, 1], self.mouth, self.mouth_u,
                             np.where(self.lower, self._drop * opening, 0.0)], 1).astype(np.float32)
            hit, val = rasterize(xy - [x0, y0], depth, self._mtris, (y1 - y0, x1 - x0), attr)
            mapx[y0:y1, x0:x1][hit] = val[:, 0]
            mapy[y0:y1, x0:x1][hit] = val[:, 1]
            if opening > 0:
                inner = val[:, 2] > 0.5
                if inner.any():
                    ys, xs = np.nonzero(hit)
                    mouth = (ys[inner] + y0, xs[inner] + x0, val[inner, 3], val[inner, 4])
        frame = cv2.remap(tex, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mouth is not None:
            ys, xs, mu, mv = mouth
            alpha = min(opening / 0.15, 1.0)
            inside = _bilinear(self.mouth_texture, mu, mv)
            frame[ys, xs] = np.clip(frame[ys, xs] * (1 - alpha) + inside * alpha + 0.5, 0, 255).astype(np.uint8)
        lm = self._lift(lm_e, xy)
        return frame, lm, box_from_landmarks(lm)

    def _expression(self, morphs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Texture with the eyelid, brow and mouth-corner edits applied (the jaw is 3-D), and its landmarks."""
        import cv2

        from .realface import Expression

        morphs = morphs.copy()
        morphs[_MOUTH_OPEN] = 0.0
        if not morphs.any():
            return self.texture, self.landmarks
        lm = self.landmarks
        ex = Expression(lm, morphs)
        face_w = float(lm[16, 0] - lm[0, 0])
        c = lm.mean(0)
        th, tw = self.texture.shape[:2]
        ys = slice(int(max(c[1] - 1.1 * face_w, 0)), int(min(c[1] + 1.1 * face_w + 1, th)))
        xs = slice(int(max(c[0] - 0.9 * face_w, 0)), int(min(c[0] + 0.9 * face_w + 1, tw)))
        gy, gx = np.mgrid[ys, xs].astype(np.float64)
        sx, sy, ly = ex.back(gx, gy)
        tex = self.texture.copy()
        region = cv2.remap(self.texture, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
        cover = ex.lid_cover(sx, ly, self.texture)
        if cover is not None:
            a, rgb = cover
            region = np.clip(region * (1 - a[..., None]) + rgb * a[..., None] + 0.5, 0, 255).astype(np.uint8)
        tex[ys, xs] = region
        return tex, ex.forward(lm)

    def _lift(self, pts: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Canvas positions of the surface points that show texture points ``pts`` (68, 2) at the photo pose.

        Point i takes barycentric coordinates in an allowed triangle around its nearest vertices or around keypoint
        vertex i: one that contains it, on the keypoint's fan if possible, else the one visible at the photo pose;
        when none contains it, the best on the fan (slightly outside). Allowed: for lower-lip landmarks triangles
        that move with the jaw, for the other lip landmarks triangles that do not, never an opening triangle."""
        from scipy.spatial import cKDTree

        if self._tree is None:
            self._tree = cKDTree(self.uv)
            order = np.argsort(self.tris.ravel(), kind="stable")
            self._vt = (order // 3, np.searchsorted(self.tris.ravel()[order], np.arange(len(self.uv) + 1)))
        tri_of, start = self._vt
        _, near = self._tree.query(pts, k=8)
        th, tw = self._uv_tri.shape
        c = np.clip(np.round(pts).astype(np.int64), 0, [tw - 1, th - 1])
        seen = self._uv_tri[c[:, 1], c[:, 0]]
        out = np.empty((len(pts), 2))
        for i, p in enumerate(pts):
            # around the point, and around landmark i's own keypoint vertex (always has allowed triangles)
            cand = np.unique(np.concatenate([tri_of[start[v]:start[v + 1]] for v in (*near[i], i)]))
            cand = cand[self._lift_ok[i, cand]]
            if not len(cand):
                raise ValueError(f"landmark {i} lies outside the head mesh")
            b = _barycentric(self.uv[self.tris[cand]], p)
            inside = b.min(1)
            # prefer triangles that contain the point: on keypoint vertex i's fan, else the one visible at the
            # photo pose; a point outside them all extrapolates on the fan (folds have several layers per texel)
            fan = (self.tris[cand] == i).any(1)
            contains = inside >= -1e-6
            score = inside + 4.0 * (contains & fan) + 2.0 * (contains & (cand == seen[i])) + 1.0 * contains + 0.5 * fan
            k = int(np.argmax(score))
            out[i] = matmul(b[k], xy[self.tris[cand[k]]])
        return out


_MOUTH_OPEN = 8  # index of mouth_open in MORPHS


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Samples of ``img`` (h, w, 3) at fractional (u, v) in [0, 1] (clamped), bilinear."""
    h, w = img.shape[:2]
    x = np.clip(u, 0, 1) * (w - 1)
    y = np.clip(v, 0, 1) * (h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx) * (1 - fy)
            + (img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx) * fy)


def mouth_texture(brightness: float = 1.0) -> np.ndarray:
    """The mouth interior (MOUTH_TEX, 3) float32 RGB in [0, 255]: rows from under the upper lip (upper teeth) down
    through a dark cavity to the tongue at a full jaw drop; darker towards the corners."""
    h, w = MOUTH_TEX
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    v, u = (v + 0.5) / h, (u + 0.5) / w
    cavity = np.array([78, 24, 30], np.float32) * (1 - v[..., None]) + np.array([40, 10, 14], np.float32) * v[..., None]
    img = cavity
    tongue = np.clip(1 - (((u - 0.5) / 0.34) ** 2 + ((v - 1.08) / 0.42) ** 2), 0, 1) ** 0.5
    img = img + (np.array([150, 62, 68], np.float32) - img) * (0.85 * tongue)[..., None]
    spread = np.abs(u - 0.5)
    teeth = np.clip((0.17 - v) / 0.03, 0, 1) * np.clip((0.4 - spread) / 0.06, 0, 1)
    k = spread / 0.085  # tooth boundaries: darker seams between incisors, canines, premolars
    seam = np.clip(1 - np.abs(k - np.round(k)) * 0.085 * w / 0.9, 0, 1) * (k > 0.3)
    tooth = np.array([226, 218, 202], np.float32) * (1 - 0.35 * seam)[..., None] * (1 - 0.25 * v / 0.17)[..., None]
    img = img + (tooth * brightness - img) * teeth[..., None]
    img = img * (0.45 + 0.55 * np.sin(np.pi * u) ** 0.6)[..., None]
    return np.clip(img, 0, 255).astype(np.float32)


def _barycentric(tri_xy: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (..., 3) of points ``p`` (..., 2) in triangles ``tri_xy`` (..., 3, 2)."""
    a, b, c = tri_xy[..., 0, :], tri_xy[..., 1, :], tri_xy[..., 2, :]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    l1 = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / den
    l2 = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / den
    return np.stack([1 - l1 - l2, l1, l2], -1)


# ----------------------------------------------------------------------------------------------- building a head
def fit_photo(name: str, max_residual: float = MAX_FIT_RESIDUAL) -> RealHead:
    """Build the head of photo ``name``; raises :class:`FaceFitError` when its face cannot be fitted."""
    import cv2
    from scipy.spatial import Delaunay

    from ...faces.bfm import BFM, euler_degrees, rotation_from_euler
    from .realface import PHOTO_INFO, load_image, photo_landmarks

    img = load_image(name)
    try:
        lm_photo = photo_landmarks(name)
    except MediaError as e:
        raise FaceFitError(f"photo {name!r}: no face found ({e.message})") from None
    # texture: the photo resampled so the face is TEX_FACE_PX tall (cv2.resize maps x to (x + 0.5) f - 0.5)
    f = TEX_FACE_PX / float(lm_photo[8, 1] - lm_photo[17:27, 1].min())
    ih, iw = img.shape[:2]
    tw, th = max(int(round(iw * f)), 1), max(int(round(ih * f)), 1)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    texture = _pad(cv2.resize(img, (tw, th), interpolation=interp), PAD)
    lm = (lm_photo + 0.5) * [tw / iw, th / ih] - 0.5 + PAD
    th, tw = texture.shape[:2]

    fit = BFM().fit(lm[None])
    residual = float(fit.residual[0])
    if not residual <= max_residual:
        raise FaceFitError(f"photo {name!r}: BFM fit residual {residual:.3f} inter-ocular distances exceeds "
                           f"{max_residual:g}")
    # the fit runs on LAPACK, whose last bits depend on the CPU: round it before anything is built from it; the head's
    # rotation is the one of its rounded angles (so rendering at the photo's pose reproduces the photo)
    angles0 = quantize(euler_degrees(fit.rotation[:1])[0])
    rot0 = rotation_from_euler(*angles0)[0]
    s0, t0 = float(quantize(fit.scale[0])), quantize(fit.translation[0])
    z = quantize(np.concatenate([fit.shape[0], fit.exp[0]]))
    d = _dense()
    idx = np.concatenate([d.keypoints, d.grid])
    verts = d.mean[idx] + matmul(d.basis[idx], z.astype(np.float32))

    def to_tex(x: np.ndarray) -> np.ndarray:
        cam = matmul(x, rot0.T)
        return np.stack([s0 * cam[:, 0] + t0[0], -(s0 * cam[:, 1] + t0[1])], 1)

    # dense refinement: shift vertices parallel to the image plane so the keypoints land on the landmarks
    # (not the jaw contour: dlib puts it on the photo's silhouette, the BFM on fixed surface points; it keeps the
    # fitted BFM's, and so does the texture-space landmark set, so every landmark is a keypoint vertex)
    res = lm - to_tex(verts[:68])
    res[:17] = 0.0
    corr = quantize(_tps(to_tex(verts[:68]), res, to_tex(verts)))
    corr[:68] = res
    lm = lm.copy()
    lm[:17] = to_tex(verts[:17])
    verts = verts + matmul(np.stack([corr[:, 0], -corr[:, 1]], 1) / s0, rot0[:2])
    kp3, grid3 = verts[:68], verts[68:]

    # face region: inside the (slightly widened) jaw contour, up to the top of the mesh
    contour = kp3[:17, :2]
    centre = kp3[[0, 16, 8], :2].mean(0) * [1, 0] + [0, kp3[36:48, 1].mean()]
    contour = centre + (contour - centre) * CONTOUR_SCALE
    top = grid3[:, 1].max() + 1.0
    temple = centre[0] + (contour[[0, 16], 0] - centre[0]) * TEMPLE_SCALE  # the steep temples go to the shell
    poly = np.concatenate([[[temple[0], top]], contour, [[temple[1], top]]])
    jaw_w = float(kp3[16, 0] - kp3[0, 0])
    cell = GRID * jaw_w
    from scipy.spatial import cKDTree

    # the 68 keypoint vertices are mesh vertices too (the photo landmarks lift onto them exactly); a closed mouth's
    # inner lips coincide, so the lower ones are set a little apart (the cut between the lips runs between them)
    iod = math.hypot(*(kp3[42:48].mean(0) - kp3[36:42].mean(0)))
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        gap = kp3[up, 1] - kp3[lo, 1]
        if gap < 0.02 * iod:
            kp3[lo, 1] -= 0.02 * iod - gap
    grid3 = grid3[_inside(poly, grid3[:, :2]) & (cKDTree(kp3[:, :2]).query(grid3[:, :2])[0] > 0.45 * cell)]
    face = np.concatenate([kp3, grid3])

    # head ellipsoid (model frame): centred at eye level, chin to crown, ears wider than the jaw
    eye_y = float(kp3[36:48, 1].mean())
    ax, ay = 0.58 * jaw_w, float(eye_y - kp3[8, 1]) * 1.05
    xc = float(kp3[[0, 16], 0].mean())
    rho_f = np.hypot((face[:, 0] - xc) / ax, (face[:, 1] - eye_y) / ay)
    ang_f = np.arctan2((face[:, 1] - eye_y) / ay, (face[:, 0] - xc) / ax)
    # the face's outline in ellipse-polar coordinates: outermost vertex per angle bin -> radius and depth,
    # smoothed around the circle; the shell continues it (same depth at the outline, then rounding back)
    n_ang = 72
    bins = np.floor((ang_f + np.pi) / (2 * np.pi) * n_ang).astype(np.int64) % n_ang
    rho_b, z_b = np.full(n_ang, np.nan), np.full(n_ang, np.nan)
    for k in range(n_ang):
        sel = np.flatnonzero(bins == k)
        if len(sel):
            j = sel[np.argmax(rho_f[sel])]
            rho_b[k], z_b[k] = rho_f[j], face[j, 2]
    centres = (np.arange(n_ang) + 0.5) / n_ang * 2 * np.pi - np.pi
    have = np.isfinite(rho_b)
    period = 2 * np.pi
    rho_b = np.interp(centres, centres[have], rho_b[have], period=period)
    z_b = np.interp(centres, centres[have], z_b[have], period=period)
    from scipy.ndimage import gaussian_filter1d

    rho_b = gaussian_filter1d(rho_b, 1.5, mode="wrap")
    z_b = gaussian_filter1d(z_b, 1.5, mode="wrap")
    zc = float(kp3[30, 2]) - SHELL_DEPTH * jaw_w  # where the shell's sides end, behind the nose
    zp = float(kp3[30, 2]) - 0.7 * jaw_w  # pivot depth: 0.7 jaw widths behind the nose (about the ear canals)

    # surround: polar rings in ellipse coordinates; the face's own region is left to the face vertices
    ang = np.arange(n_ang) * 2 * np.pi / n_ang - np.pi
    rings = np.concatenate([np.arange(0.35, 1.0, 0.08), [1.0, 1.1, 1.22, 1.36, 1.52, 1.72, 1.95, 2.2, 2.5]])
    rr, aa = np.meshgrid(rings, ang, indexing="ij")
    rr, aa = rr.ravel(), aa.ravel() + np.pi / n_ang * (np.arange(rr.size) // n_ang % 2)  # staggered rings
    sx, sy = xc + ax * rr * np.cos(aa), eye_y + ay * rr * np.sin(aa)
    sur = np.stack([sx, sy], 1)
    near = cKDTree(face[:, :2]).query(sur)[0] < 1.5 * cell
    out = ~near & ~_inside(poly, sur)
    sur, rr, aa = sur[out], rr[out], aa[out]
    rb = np.interp(aa, centres, rho_b, period=period)
    zb = np.interp(aa, centres, z_b, period=period)
    s_out = np.clip((rr - rb) / np.maximum(1.0 - rb, 0.05), 0, 1)
    # (set a little behind the outline, so that where the head turns or nods over its surround, the face wins)
    sz = zc + (zb - zc) * (1 - s_out ** 2) - 0.06 * jaw_w
    sur3 = np.concatenate([sur, sz[:, None]], 1)
    t = np.clip((rr - 1.05) / (2.15 - 1.05), 0, 1)
    sw = 1 - t * t * (3 - 2 * t)

    verts = np.concatenate([face, sur3])
    weight = np.concatenate([np.ones(len(face)), sw])
    tris = Delaunay(verts[:, :2]).simplices.astype(np.int64)

    # the cut between the lips: below it (inside the mouth's width) the jaw drops; the triangles across it open
    upper_in, lower_in = kp3[[60, 61, 62, 63, 64], :2], kp3[[60, 67, 66, 65, 64], :2]
    mid = 0.5 * (upper_in + lower_in)
    order = np.argsort(mid[:, 0])
    cx, hw = float(kp3[[48, 54], 0].mean()), float(kp3[54, 0] - kp3[48, 0]) / 2
    jaw = _Jaw(mid[order, 0], mid[order, 1], cx, hw, iod, float(kp3[8, 1]))
    below = np.interp(verts[:, 0], jaw.line_x, jaw.line_y) > verts[:, 1]
    in_mouth = np.abs(verts[:, 0] - cx) <= hw
    lower = below & in_mouth
    lower[list(UPPER_KP)] = False
    lower[list(LOWER_KP)] = True
    upper = ~lower & in_mouth & ~below
    upper[list(UPPER_KP)] = True
    opening = lower[tris].any(1) & upper[tris].any(1)
    # the opening triangles get vertices of their own (same places), flagged, so they can show the interior
    src = np.unique(tris[opening])
    remap = np.full(len(verts), -1, np.int64)
    remap[src] = len(verts) + np.arange(len(src))
    tris[opening] = remap[tris[opening]]
    verts = np.concatenate([verts, verts[src]])
    weight = np.concatenate([weight, weight[src]])
    lower = np.concatenate([lower, lower[src]])
    upper = np.concatenate([upper, upper[src]])
    mouth = np.concatenate([np.zeros(len(weight) - len(src)), np.ones(len(src))])
    mouth_u = np.clip((verts[:, 0] - (cx - hw)) / (2 * hw), 0, 1)

    pivot = np.array([xc, eye_y - 0.35 * ay, zp])
    uv = to_tex(verts)
    far = float(matmul(rot0, pivot)[2] - 3 * jaw_w)
    moving = np.flatnonzero(weight[tris].max(1) > 0)
    # which triangle shows each texel at the photo pose (to lift 2-D texture points onto the surface)
    depth0 = weight * matmul(verts, rot0.T)[:, 2] + (1 - weight) * far
    hit, vis = rasterize(uv, depth0, tris, (th, tw))
    uv_tri = np.full((th, tw), -1, np.int32)
    uv_tri[hit] = vis
    lift_ok = np.repeat((~opening)[None], 68, 0)
    lift_ok[list(LOWER_KP)] &= ~upper[tris].any(1)
    lift_ok[list(UPPER_KP)] &= ~lower[tris].any(1)
    # the interior is lit like the face: its brightness follows the photo's skin
    skin = texture[int(lm[29, 1]) - 3:int(lm[29, 1]) + 4, int(lm[29, 0]) - 3:int(lm[29, 0]) + 4].reshape(-1, 3)
    bright = float(np.clip(skin.mean() / 170.0, 0.55, 1.1))
    return RealHead(name=name, identity=PHOTO_INFO[name].identity, texture=texture, landmarks=lm, pose0=angles0,
                    residual=residual, verts=verts, uv=uv, weight=weight, lower=lower, mouth=mouth, mouth_u=mouth_u,
                    tris=tris, jaw=jaw, mouth_texture=mouth_texture(bright), rot0=rot0, scale0=s0,
                    trans0=np.asarray(t0, np.float64), pivot=pivot, far=far, _uv_tri=uv_tri, _lift_ok=lift_ok,
                    _moving=moving)


@functools.lru_cache(maxsize=None)
def _head(name: str) -> RealHead:
    return fit_photo(name)


@functools.lru_cache(maxsize=None)
def usable_photos() -> tuple[dict[str, Any], dict[str, str]]:
    """The demo photos that make a head (name -> PhotoInfo) and those refused (name -> reason)."""
    from .realface import PHOTOS

    ok, rejected = {}, {}
    for name, info in PHOTOS.items():
        try:
            _head(name)
        except FaceFitError as e:
            rejected[name] = str(e)
        else:
            ok[name] = info
    return ok, rejected


# ----------------------------------------------------------------------------------------------- corpus shots
class RealShot:
    """One photo shot: the photo's head, framed at a random face size and position (left of centre in even shots,
    right in odd ones, so that a cut between two shots of one photo changes the picture enough for a shot detector
    to see it), talking with head turns around the photo's own pose (within ``LIMITS``) and a slight drift.
    ``frame(t, motion)`` draws frame ``t`` (its framing and drift) with any motion (the oracle uses that)."""

    def __init__(self, shot: Any, w: int, h: int, fps: float) -> None:
        from .motion import smooth_noise, talking_motion

        rng = np.random.default_rng(list(shot.seed))
        self.head = RealHead.from_photo(shot.source)
        self.size = (w, h)
        side = -1 if shot.seed[-1] % 2 == 0 else 1
        self.framing = self.head.framing((w, h), centre=((0.5 + side * rng.uniform(0.04, 0.14)) * w,
                                                          rng.uniform(0.47, 0.53) * h),
                                         face_px=rng.uniform(0.3, 0.38) * h)
        motion = talking_motion(rng, shot.n_frames, fps, yaw=26.0, pitch=12.0, roll=8.0)
        motion[:, N_MORPHS:] += self.head.pose0
        self.motion = self.head.clamp(motion)
        face_px = self.framing.scale * self.head.face_height
        sx, sy = smooth_noise(rng, shot.n_frames, fps), smooth_noise(rng, shot.n_frames, fps)
        self.shifts = np.stack([0.03 * face_px * sx, 0.02 * face_px * sy], 1)

    def clamp(self, motion: np.ndarray) -> np.ndarray:
        return self.head.clamp(motion)

    def frame(self, t: int, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.head.render(motion, self.size, self.framing, tuple(self.shifts[t]))


# ----------------------------------------------------------------------------------------------- contact sheet
SHEET_POSES = (  # photo, (yaw, pitch, roll) from the photo's pose, morphs
    ("astronaut", (-25.0, 0.0, 0.0), {}),
    ("astronaut", (22.0, 6.0, 5.0), {"mouth_open": 0.7, "vowel_a": 0.8}),
    ("grace_hopper", (25.0, 0.0, 0.0), {}),
    ("grace_hopper", (-18.0, -12.0, -6.0), {"smile": 1.0, "eye_happy": 0.6}),
    ("grace_hopper", (0.0, 14.0, 0.0), {"mouth_open": 0.5, "vowel_o": 1.0}),
    ("carphone_a", (-22.0, 5.0, 8.0), {"blink_left": 1.0, "blink_right": 1.0}),
    ("carphone_a", (24.0, -8.0, -6.0), {"mouth_open": 0.4}),
    ("carphone_b", (-15.0, -12.0, 10.0), {"brow_up_left": 1.0, "brow_up_right": 1.0, "eye_wide_left": 0.6,
                                          "eye_wide_right": 0.6}),
)


def contact_row(n_tiles: int = 8, tile: int = 200) -> np.ndarray:
    """A row of ``n_tiles`` (tile x tile) renders of the real heads at set head poses and expressions."""
    from ...faces.pose import MORPHS

    usable = usable_photos()[0]
    tiles = []
    for name, angles, morphs in [p for p in SHEET_POSES if p[0] in usable][:n_tiles]:
        head = RealHead.from_photo(name)
        m = np.zeros(POSE_DIM)
        for k, v in morphs.items():
            m[MORPHS.index(k)] = v
        m[N_MORPHS:] = head.pose0 + np.asarray(angles)
        frame, _, _ = head.render(head.clamp(m), (tile, tile), head.framing((tile, tile), face_px=0.4 * tile))
        tiles.append(frame)
    while len(tiles) < n_tiles:
        tiles.append(np.full((tile, tile, 3), 255, np.uint8))
    return np.concatenate(tiles, 1)
