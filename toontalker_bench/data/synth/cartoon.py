"""Procedural Disney-like cartoon heads, ray-cast on a 3D head model with numpy.

A head is an ellipsoid in *head units* (vertical semi-axis 1; x right, y down, z towards the viewer). Every
pixel of the region of interest is cast orthographically onto the rotated ellipsoid, so each visible pixel knows
its point on the head in canonical coordinates; eyes, brows, mouth, blush and hair are painted as shapes in those
canonical coordinates. A yaw therefore slides the features across the face and foreshortens them, exactly as a
3D rotation does, and the 68 landmarks are the same canonical points rotated and projected.

Rotation convention (see :mod:`toontalker_bench.faces.pose`): ``R = R_roll @ R_pitch @ R_yaw`` maps canonical
head coordinates to camera coordinates; yaw > 0 moves the nose to the image's right, pitch > 0 lifts the chin,
roll > 0 turns the face clockwise on screen. Morph names ending in ``_left`` act on the image-left feature
(dlib points 36-41 and 17-21).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core import exact
from ...faces.pose import MORPHS

M = {name: i for i, name in enumerate(MORPHS)}
LIGHT = np.array([-0.35, -0.55, 0.76], dtype=np.float32) / np.linalg.norm([-0.35, -0.55, 0.76])
N_HAIR_STYLES = 4  # short, bob, long, bun
N_FRINGES = 5

SKINS = np.array([[255, 224, 196], [247, 206, 170], [236, 188, 150], [214, 160, 120], [178, 122, 86],
                  [140, 92, 62], [255, 214, 190], [228, 180, 140]], np.float32) / 255
HAIRS = np.array([[40, 28, 22], [92, 56, 30], [150, 96, 48], [222, 180, 100], [180, 60, 30], [30, 30, 40],
                  [120, 120, 130], [70, 40, 90], [200, 120, 60]], np.float32) / 255
EYES = np.array([[60, 120, 200], [60, 150, 90], [110, 70, 40], [70, 50, 30], [120, 90, 180], [40, 150, 170],
                 [150, 110, 50]], np.float32) / 255


@dataclass(frozen=True)
class Character:
    """Appearance of one cartoon identity (all lengths in head units)."""

    identity: str
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    eye: tuple[float, float, float]
    lip: tuple[float, float, float]
    shirt: tuple[float, float, float]
    head_a: float  # horizontal semi-axis
    head_c: float  # depth semi-axis
    jaw: float  # chin taper
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    iris: float  # iris radius relative to eye_w
    brow_gap: float
    brow_t: float
    nose_y: float
    nose_r: float
    mouth_y: float
    mouth_w: float
    hair_style: int
    fringe: int


def make_character(rng: np.random.Generator, identity: str) -> Character:
    """Draw one identity's appearance from ``rng``."""

    def pick(table: np.ndarray) -> tuple[float, float, float]:
        c = table[rng.integers(len(table))] * rng.uniform(0.93, 1.05, 3)
        return tuple(float(v) for v in np.clip(c, 0, 1))  # type: ignore[return-value]

    skin = pick(SKINS)
    lip = tuple(float(v) for v in np.clip(np.array(skin) * [0.85, 0.55, 0.55] + [0.08, 0, 0.02], 0, 1))
    return Character(
        identity=identity, skin=skin, hair=pick(HAIRS), eye=pick(EYES), lip=lip,  # type: ignore[arg-type]
        shirt=tuple(float(v) for v in rng.uniform(0.15, 0.9, 3)),  # type: ignore[arg-type]
        head_a=float(rng.uniform(0.76, 0.88)), head_c=float(rng.uniform(0.8, 0.9)), jaw=float(rng.uniform(0.1, 0.45)),
        eye_x=float(rng.uniform(0.3, 0.36)), eye_y=float(rng.uniform(0.0, 0.07)), eye_w=float(rng.uniform(0.15, 0.19)),
        eye_h=float(rng.uniform(0.14, 0.19)), iris=float(rng.uniform(0.55, 0.68)), brow_gap=float(rng.uniform(0.08, 0.14)),
        brow_t=float(rng.uniform(0.045, 0.075)), nose_y=float(rng.uniform(0.3, 0.37)), nose_r=float(rng.uniform(0.06, 0.09)),
        mouth_y=float(rng.uniform(0.57, 0.64)), mouth_w=float(rng.uniform(0.15, 0.21)),
        hair_style=int(rng.integers(N_HAIR_STYLES)), fringe=int(rng.integers(N_FRINGES)),
    )


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Canonical head -> camera rotation for angles in degrees (``R_roll @ R_pitch @ R_yaw``)."""
    (cy, cp, cr), (sy, sp, sr) = exact.cos(np.deg2rad([yaw, pitch, roll])), exact.sin(np.deg2rad([yaw, pitch, roll]))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rp = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rr = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return exact.matmul(exact.matmul(rr, rp), ry).astype(np.float32)


@dataclass
class Hit:
    """Orthographic ray cast of a grid onto an ellipsoid: canonical points, camera normals, coverage."""

    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray
    light: np.ndarray  # cosine between the surface normal and LIGHT
    cover: np.ndarray  # anti-aliased silhouette coverage in [0, 1]
    edge: np.ndarray  # distance inside the silhouette in head units


def ray_cast(u: np.ndarray, v: np.ndarray, R: np.ndarray, centre: np.ndarray, radii: np.ndarray, px: float) -> Hit:
    """Cast camera rays (x=u, y=v, travelling along -z) onto the rotated ellipsoid; misses clamp to the silhouette.

    ``centre`` and ``radii`` are canonical; ``px`` is one pixel in head units (for anti-aliasing).
    """
    cc = exact.matmul(R, centre)
    uu, vv = u - cc[0], v - cc[1]
    Mq = exact.matmul(exact.matmul(R, np.diag(1.0 / radii.astype(np.float32) ** 2)), R.T).astype(np.float32)
    A = float(Mq[2, 2])
    B = Mq[0, 2] * uu + Mq[1, 2] * vv
    C = Mq[0, 0] * uu * uu + 2 * Mq[0, 1] * uu * vv + Mq[1, 1] * vv * vv - 1
    disc = B * B - A * C
    w = (-B + np.sqrt(np.maximum(disc, 0))) / A
    gu = 2 * B * Mq[0, 2] - 2 * A * (Mq[0, 0] * uu + Mq[0, 1] * vv)
    gv = 2 * B * Mq[1, 2] - 2 * A * (Mq[0, 1] * uu + Mq[1, 1] * vv)
    edge = disc / np.maximum(np.sqrt(gu * gu + gv * gv), 1e-6)
    cover = np.clip(0.5 + edge / px, 0, 1)
    P = [R[0, i] * uu + R[1, i] * vv + R[2, i] * w + centre[i] for i in range(3)]  # R^T q
    n = [Mq[i, 0] * uu + Mq[i, 1] * vv + Mq[i, 2] * w for i in range(3)]  # ellipsoid gradient (normal direction)
    norm = np.maximum(np.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2), 1e-6)
    light = (LIGHT[0] * n[0] + LIGHT[1] * n[1] + LIGHT[2] * n[2]) / norm
    return Hit(P[0], P[1], P[2], light, cover, edge)


def _soft(d: np.ndarray, px: float) -> np.ndarray:
    """Coverage of a signed distance field (negative inside) at pixel size ``px``."""
    return np.clip(0.5 - d / px, 0, 1)


def _blend(col: np.ndarray, alpha: np.ndarray, rgb) -> None:  # noqa: ANN001 - (3,) or (H, W, 3)
    a = alpha[..., None]
    col *= 1 - a
    col += a * rgb


def _shade(hit: Hit, ambient: float = 0.62) -> np.ndarray:
    lam = hit.light
    return ambient + (1 - ambient) * np.clip(lam, 0, 1) ** 0.8


def hairline(ch: Character, X: np.ndarray) -> np.ndarray:
    """Canonical y of the front hairline as a function of x, per fringe style."""
    x = X / ch.head_a
    f = ch.fringe
    if f == 0:  # straight bangs
        return -0.36 - 0.05 * np.cos(np.pi * x)
    if f == 1:  # side-swept
        return -0.46 + 0.2 * x
    if f == 2:  # middle-part curtain
        return -0.62 + 0.32 * x * x
    if f == 3:  # spiky
        return -0.42 + 0.08 * np.abs(np.sin(9 * X))
    return -0.58 + 0.1 * x * x  # high forehead


def face_half_width(ch: Character, Y: np.ndarray) -> np.ndarray:
    """Half-width of the face outline at canonical height ``Y`` (ellipsoid section narrowed towards the chin)."""
    Yc = np.clip(Y, -1, 1)
    low = np.clip(Yc, 0, 1)
    return ch.head_a * np.sqrt(1 - Yc * Yc) * (1 - ch.jaw * low * np.sqrt(low))  # low ** 1.5, CPU-independent


def surface_z(ch: Character, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return ch.head_c * np.sqrt(np.clip(1 - (X / ch.head_a) ** 2 - Y * Y, 0, 1))


@dataclass(frozen=True)
class Expr:
    """Morph-derived feature geometry (canonical units)."""

    lid_top: tuple[float, float]  # upper-lid y factor per eye (image-left, image-right); -1 = wide open top
    lid_bot: tuple[float, float]
    brow_dy: tuple[float, float]
    brow_tilt: tuple[float, float]
    mouth_w: float
    mouth_up: float
    mouth_lo: float
    mouth_curve: float  # corners' y offset (negative = up)


def expression(ch: Character, m: np.ndarray) -> Expr:
    tops, bots, dys, tilts = [], [], [], []
    for side in ("left", "right"):
        blink = m[M[f"blink_{side}"]]
        wide = m[M[f"eye_wide_{side}"]]
        happy = m[M["eye_happy"]]
        top0 = -(1 + 0.3 * wide)
        bot = 1 - 0.75 * happy
        closed = 0.9 * bot
        tops.append(float(top0 + (closed - top0) * blink))
        bots.append(float(bot))
        dys.append(float(-0.13 * m[M[f"brow_up_{side}"]] + 0.07 * m[M[f"brow_down_{side}"]]))
        tilts.append(float(0.06 * m[M[f"brow_down_{side}"]] - 0.02 * m[M[f"brow_up_{side}"]]))
    v = {k: m[M[f"vowel_{k}"]] for k in "aiueo"}
    width = ch.mouth_w * (1 + 0.25 * m[M["smile"]] + 0.22 * v["i"] + 0.12 * v["e"] - 0.4 * v["u"] - 0.25 * v["o"])
    opening = 0.004 + 0.27 * m[M["mouth_open"]] + 0.04 * v["a"] + 0.03 * v["o"]
    return Expr(
        lid_top=(tops[0], tops[1]), lid_bot=(bots[0], bots[1]), brow_dy=(dys[0], dys[1]), brow_tilt=(tilts[0], tilts[1]),
        mouth_w=float(width), mouth_up=float(opening * (0.3 + 0.4 * (v["o"] + v["u"]))), mouth_lo=float(opening),
        mouth_curve=float(0.07 * (m[M["frown"]] - m[M["smile"]])),
    )


# ----------------------------------------------------------------------------------------------- landmarks
def _lid_curve(f: float, dx: np.ndarray) -> np.ndarray:
    return f * np.sqrt(np.clip(1 - dx * dx, 0, 1))


def _brow_y(ch: Character, e: Expr, side: int, dx: np.ndarray) -> np.ndarray:
    """Brow centre line; ``dx`` in [-1, 1] from image-left to image-right end of that brow."""
    base = ch.eye_y - ch.eye_h - ch.brow_gap + e.brow_dy[side]
    inner = dx if side == 0 else -dx  # +1 at the inner end
    return base - 0.05 * (1 - dx * dx) + e.brow_tilt[side] * inner


def _mouth_line(e: Expr, dx: np.ndarray, ch: Character) -> np.ndarray:
    return ch.mouth_y + e.mouth_curve * dx * dx


def canonical_landmarks(ch: Character, e: Expr) -> np.ndarray:
    """The 68 landmarks (iBUG/dlib order) as canonical 3D points on the head surface."""
    pts = np.zeros((68, 2), np.float64)
    # jaw 0..16: face outline from the image-left side at eye level, round the chin, up to the right side
    ys = np.linspace(ch.eye_y, 1.0, 400)
    hw = face_half_width(ch, ys)
    ok = hw > 0.01
    ys, hw = ys[ok], hw[ok]
    curve = np.concatenate([np.stack([-hw, ys], 1), np.stack([hw, ys], 1)[::-1]])
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.linspace(0, s[-1], 17)
    pts[0:17, 0] = np.interp(t, s, curve[:, 0])
    pts[0:17, 1] = np.interp(t, s, curve[:, 1])
    bw = ch.eye_w * 1.15
    for side, (lo, sgn) in enumerate(((17, -1), (22, 1))):
        dx = np.linspace(-1, 1, 5)
        pts[lo:lo + 5, 0] = sgn * ch.eye_x + dx * bw
        pts[lo:lo + 5, 1] = _brow_y(ch, e, side, dx)
    pts[27:31, 0] = 0
    pts[27:31, 1] = np.linspace(ch.eye_y - 0.05, ch.nose_y, 4)
    pts[31:36, 0] = np.linspace(-1, 1, 5) * ch.nose_r * 1.1
    pts[31:36, 1] = ch.nose_y + ch.nose_r * (0.75 + 0.2 * (1 - np.linspace(-1, 1, 5) ** 2))
    for side, (idx, sgn) in enumerate((((36, 37, 38, 39, 40, 41), -1), ((42, 43, 44, 45, 46, 47), 1))):
        cx = sgn * ch.eye_x
        dxs = np.array([-1, -1 / 3, 1 / 3, 1, 1 / 3, -1 / 3])
        top = _lid_curve(e.lid_top[side], dxs)
        bot = _lid_curve(e.lid_bot[side], dxs)
        pts[list(idx), 0] = cx + dxs * ch.eye_w
        pts[list(idx), 1] = ch.eye_y + ch.eye_h * np.where(np.arange(6) < 4, top, bot)
    lip_up, lip_lo = 0.03, 0.045
    dx_o = np.array([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3])
    sq = np.sqrt(np.clip(1 - dx_o ** 2, 0, 1))
    line = _mouth_line(e, dx_o, ch)
    upper = np.arange(12) <= 6
    pts[48:60, 0] = dx_o * e.mouth_w
    pts[48:60, 1] = np.where(upper, line - (e.mouth_up + lip_up) * sq, line + (e.mouth_lo + lip_lo) * sq)
    dx_i = np.array([-1, -0.5, 0, 0.5, 1, 0.5, 0, -0.5]) * 0.9
    sq = np.sqrt(np.clip(1 - dx_i ** 2, 0, 1))
    line = _mouth_line(e, dx_i, ch)
    upper = np.arange(8) <= 4
    pts[60:68, 0] = dx_i * e.mouth_w
    pts[60:68, 1] = np.where(upper, line - e.mouth_up * sq, line + e.mouth_lo * sq)
    z = surface_z(ch, pts[:, 0], pts[:, 1])
    z[30] = z[30] + ch.nose_r * 1.1  # nose tip sits on the nose bump
    return np.concatenate([pts, z[:, None]], 1)


def box_from_landmarks(lm: np.ndarray) -> np.ndarray:
    """Face box convention shared by both domains: landmarks' bounds, top raised by 25% of their height (forehead)."""
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    return np.array([x0, y0 - 0.25 * (y1 - y0), x1, y1], np.float64)


# ----------------------------------------------------------------------------------------------- rendering
@dataclass
class _Surface:
    """Per-pixel canonical head coordinates over the region of interest, plus what is needed to find the pixel
    window of a canonical patch (so each feature is only evaluated where it can appear)."""

    hit: Hit
    front: np.ndarray
    col: np.ndarray
    R: np.ndarray
    origin: tuple[float, float]  # head centre in ROI pixels
    scale: float
    depth: float

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        c = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (0.0, self.depth)], np.float32)
        c = exact.matmul(c, self.R.T)
        u = self.origin[0] + c[:, 0] * self.scale
        v = self.origin[1] + c[:, 1] * self.scale
        h, w = self.front.shape
        return (slice(int(np.clip(v.min() - 3, 0, h)), int(np.clip(v.max() + 4, 0, h))),
                slice(int(np.clip(u.min() - 3, 0, w)), int(np.clip(u.max() + 4, 0, w))))

    def view(self, sl: tuple[slice, slice]) -> tuple[np.ndarray, ...]:
        return self.hit.X[sl], self.hit.Y[sl], self.front[sl], self.col[sl]


def _paint_eye(ch: Character, e: Expr, side: int, X: np.ndarray, Y: np.ndarray, front: np.ndarray, col: np.ndarray,
               px: float) -> None:
    sgn = (-1, 1)[side]
    cx = sgn * ch.eye_x
    dx = (X - cx) / ch.eye_w
    yr = (Y - ch.eye_y) / ch.eye_h
    sq = np.sqrt(np.clip(1 - dx * dx, 0, 1))
    top = _lid_curve(e.lid_top[side], dx)
    bot = _lid_curve(e.lid_bot[side], dx)
    d_open = np.maximum.reduce([(np.abs(dx) - 1) * ch.eye_w, (top - yr) * ch.eye_h, (yr - bot) * ch.eye_h])
    a_open = _soft(d_open, px) * front
    sclera = np.float32(0.97) * (0.8 + 0.2 * np.clip((yr - top) / 0.6, 0, 1))
    _blend(col, a_open, sclera[..., None] * np.ones(3, np.float32))
    ri = ch.iris * ch.eye_w
    iy = ch.eye_y + 0.12 * ch.eye_h
    r = np.sqrt((X - cx) ** 2 + (Y - iy) ** 2)
    grad = (0.45 + 0.55 * np.clip((Y - iy + ri) / (2 * ri), 0, 1))[..., None]
    ring = np.clip((r / ri - 0.8) / 0.2, 0, 1)[..., None]
    iris_col = np.asarray(ch.eye, np.float32) * grad * (1 - 0.5 * ring)
    _blend(col, _soft(r - ri, px) * a_open, iris_col)
    _blend(col, _soft(r - 0.48 * ri, px) * a_open, np.array([0.05, 0.04, 0.06], np.float32))
    for hx, hy, hr in ((-0.32, -0.35, 0.3), (0.38, 0.3, 0.13)):
        rh = np.sqrt((X - cx - hx * ri) ** 2 + (Y - iy - hy * ri) ** 2)
        _blend(col, _soft(rh - hr * ri, px) * a_open, np.ones(3, np.float32))
    # upper lid line with lashes (thicker at the outer corner), thin lower lid line
    outer = np.clip(sgn * dx, 0, 1)
    t_up = (0.022 + 0.02 * outer) * (0.5 + 0.5 * sq)
    d_up = np.maximum(np.abs((yr - top) * ch.eye_h) - t_up, (np.abs(dx) - 1.08) * ch.eye_w)
    _blend(col, _soft(d_up, px) * front, np.array([0.12, 0.07, 0.06], np.float32))
    d_lo = np.maximum(np.abs((yr - bot) * ch.eye_h) - 0.006, (np.abs(dx) - 0.9) * ch.eye_w)
    _blend(col, 0.6 * _soft(d_lo, px) * front, np.array([0.35, 0.2, 0.15], np.float32))


def _paint_brow(ch: Character, e: Expr, side: int, X: np.ndarray, Y: np.ndarray, front: np.ndarray, col: np.ndarray,
                px: float) -> None:
    bw = ch.eye_w * 1.15
    bdx = (X - (-1, 1)[side] * ch.eye_x) / bw
    by = _brow_y(ch, e, side, np.clip(bdx, -1, 1))
    tb = ch.brow_t * (1 - 0.55 * bdx * bdx) / 2
    d_b = np.maximum(np.abs(Y - by) - tb, (np.abs(bdx) - 1) * bw)
    _blend(col, _soft(d_b, px) * front, np.asarray(ch.hair, np.float32) * 0.7)


def _paint_mouth(ch: Character, e: Expr, X: np.ndarray, Y: np.ndarray, front: np.ndarray, col: np.ndarray,
                 px: float) -> None:
    dx = X / e.mouth_w
    sq = np.sqrt(np.clip(1 - dx * dx, 0, 1))
    line = _mouth_line(e, np.clip(dx, -1, 1), ch)
    top, bot = line - e.mouth_up * sq, line + e.mouth_lo * sq
    d_in = np.maximum.reduce([(np.abs(dx) - 1) * e.mouth_w, top - Y, Y - bot])
    lip = np.asarray(ch.lip, np.float32)
    d_lips = np.maximum.reduce([(np.abs(dx) - 1) * e.mouth_w, top - 0.03 * sq - Y, Y - bot - 0.045 * sq])
    _blend(col, 0.55 * _soft(d_lips, px) * front, lip)
    a_in = _soft(d_in, px) * front
    _blend(col, a_in, np.array([0.32, 0.07, 0.1], np.float32))
    teeth = _soft(np.maximum(d_in, Y - top - 0.035), px)
    _blend(col, teeth * a_in, np.array([0.97, 0.96, 0.93], np.float32))
    tongue = _soft(np.sqrt((X / (0.6 * e.mouth_w)) ** 2 + ((Y - bot) / 0.06) ** 2) * 0.05 - 0.05, px)
    _blend(col, tongue * a_in, np.array([0.85, 0.4, 0.45], np.float32))
    d_line = np.maximum(np.minimum(np.abs(Y - top), np.abs(Y - bot)) - 0.014, (np.abs(dx) - 1.02) * e.mouth_w)
    _blend(col, _soft(d_line, px) * front, lip * 0.45)


def _paint_face(ch: Character, e: Expr, surf: _Surface, px: float) -> np.ndarray:
    """Paint blush, nose shadow, eyes, brows, mouth and the hair cap; returns the hair cap's alpha."""
    skin = np.asarray(ch.skin, np.float32)
    for sx in (-1, 1):  # blush
        X, Y, front, col = surf.view(surf.window(sx * 0.45 - 0.25, sx * 0.45 + 0.25, 0.05, 0.55))
        g = np.exp(-((X - sx * 0.45) ** 2 + (Y - 0.3) ** 2) / (2 * 0.09 ** 2)) * 0.35 * front
        _blend(col, g, np.array([0.95, 0.45, 0.45], np.float32))
    ny = ch.nose_y + ch.nose_r
    X, Y, front, col = surf.view(surf.window(-0.2, 0.24, ny - 0.08, ny + 0.08))
    sh = np.exp(-((X - 0.02) ** 2 / (2 * 0.07 ** 2) + (Y - ny) ** 2 / (2 * 0.025 ** 2)))
    _blend(col, 0.35 * sh * front, skin * 0.55)
    for side, sgn in enumerate((-1, 1)):
        cx = sgn * ch.eye_x
        hh = ch.eye_h * 1.4
        _paint_eye(ch, e, side, *surf.view(surf.window(cx - 1.15 * ch.eye_w, cx + 1.15 * ch.eye_w, ch.eye_y - hh,
                                                            ch.eye_y + hh)), px)
        by = ch.eye_y - ch.eye_h - ch.brow_gap + e.brow_dy[side]
        bw = ch.eye_w * 1.2
        _paint_brow(ch, e, side, *surf.view(surf.window(cx - bw, cx + bw, by - 0.15, by + 0.12)), px)
    mw = e.mouth_w * 1.1
    _paint_mouth(ch, e, *surf.view(surf.window(-mw, mw, ch.mouth_y - 0.2, ch.mouth_y + e.mouth_lo + 0.15)), px)
    hit = surf.hit  # hair cap: fringe, sides, back
    d_hair = hit.Y - hairline(ch, hit.X)
    side_len = 0.05 if ch.hair_style == 0 else 0.55
    d_side = np.maximum(0.8 * ch.head_a - np.abs(hit.X), hit.Y - side_len)
    d_hair = np.minimum.reduce([d_hair, d_side, hit.Z + 0.05 * ch.head_c])
    a_hair = _soft(d_hair, px)
    _blend(surf.col, a_hair, np.asarray(ch.hair, np.float32))
    return a_hair


def render(ch: Character, motion: np.ndarray, canvas: np.ndarray, centre: tuple[float, float],
           scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``ch`` posed by ``motion`` (20-D) into a float32 RGB ``canvas`` (modified in place).

    ``centre`` is the head centre in pixels, ``scale`` the head's vertical semi-axis in pixels. Returns
    ``(canvas, landmarks (68, 2) pixels, box x0y0x1y1)``.
    """
    H, W = canvas.shape[:2]
    m = np.clip(np.asarray(motion[:17], np.float64), 0, 1)
    yaw, pitch, roll = (float(v) for v in motion[17:20])
    R = rotation(yaw, pitch, roll)
    e = expression(ch, m)
    px = 1.0 / scale
    cx, cy = centre
    long_hair = ch.hair_style == 2
    x0, x1 = int(max(cx - 1.7 * scale, 0)), int(min(cx + 1.7 * scale + 1, W))
    y0, y1 = int(max(cy - 1.7 * scale, 0)), int(min(cy + 2.6 * scale + 1, H))
    if x1 <= x0 or y1 <= y0:
        raise ValueError("head outside the frame")
    roi = canvas[y0:y1, x0:x1]
    gx = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / scale)[None, :]
    gy = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) / scale)[:, None]
    u, v = np.broadcast_arrays(gx, gy)
    u, v = np.ascontiguousarray(u), np.ascontiguousarray(v)
    hair = np.asarray(ch.hair, np.float32)
    skin = np.asarray(ch.skin, np.float32)

    def win(u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """ROI slices of a head-unit rectangle (layers are only evaluated where they can appear)."""
        return (slice(int(np.searchsorted(gy[:, 0], v0)), int(np.searchsorted(gy[:, 0], v1))),
                slice(int(np.searchsorted(gx[0], u0)), int(np.searchsorted(gx[0], u1))))

    # 2D layers in the rolled head frame: long hair behind, neck, shoulders
    cr, sr = float(exact.cos(np.deg2rad(roll))), float(exact.sin(np.deg2rad(roll)))
    shift = 0.35 * float(exact.sin(np.deg2rad(yaw)))
    if long_hair:
        sl = win(-1.8, 1.8, -0.5, 2.6)
        hu, hv = cr * u[sl] + sr * v[sl], -sr * u[sl] + cr * v[sl]
        d = np.maximum(np.abs(hu - 0.3 * shift) - ch.head_a * (1.05 + 0.1 * np.clip(hv, 0, 2)), np.abs(hv - 0.8) - 1.1)
        _blend(roi[sl], _soft(d, px), hair * 0.8)
    sl = win(-0.6, 0.6, 0.5, 1.9)
    d_neck = np.maximum(np.abs(u[sl] - 0.1 * shift) - 0.26, np.abs(v[sl] - 1.2) - 0.55)
    _blend(roi[sl], _soft(d_neck, px), skin * 0.78)
    sl = win(-1.8, 1.8, 1.4, 3.3)
    us, vs = u[sl], v[sl]
    d_sh = (np.sqrt((us / 1.55) ** 2 + ((vs - 2.35) / 0.85) ** 2) - 1) * 0.85
    shirt = np.asarray(ch.shirt, np.float32) * (0.8 + 0.2 * np.clip(1.8 - vs, 0, 1))[..., None]
    _blend(roi[sl], _soft(d_sh, px), shirt)
    # 3D layers, back to front: bun, hair volume, head, nose
    hs = win(-1.45, 1.45, -1.65, 1.2)
    roi_h, u, v = roi[hs], u[hs], v[hs]
    if ch.hair_style == 3:
        h = ray_cast(u, v, R, np.array([0, -1.0, -0.25], np.float32), np.array([0.36, 0.32, 0.36], np.float32), px)
        _blend(roi_h, h.cover, hair * _shade(h)[..., None])
    cut = {0: 0.05, 1: 0.55, 2: 0.9, 3: 0.05}[ch.hair_style]
    hv3 = ray_cast(u, v, R, np.array([0, -0.08, -0.1], np.float32),
                   np.array([ch.head_a * 1.13, 1.07, ch.head_c * 1.12], np.float32), px)
    sides = np.minimum(hv3.Y, np.maximum(hv3.Z - 0.3 * ch.head_c, 0.75 * ch.head_a - np.abs(hv3.X)))
    a_hv = hv3.cover * _soft(np.maximum(hv3.Y - cut, sides), px)
    _blend(roi_h, a_hv, hair * _shade(hv3)[..., None])
    head = ray_cast(u, v, R, np.zeros(3, np.float32), np.array([ch.head_a, 1.0, ch.head_c], np.float32), px)
    # chin cut: the front lower face follows the tapered outline
    d_face = np.where(head.Z > 0, np.abs(head.X) - face_half_width(ch, head.Y), -1.0)
    d_face = np.where(head.Y > 0.98, head.Y - 0.98, d_face)
    a_head = head.cover * _soft(d_face, px)
    col = np.broadcast_to(skin, u.shape + (3,)).copy()
    origin = (cx - x0 - hs[1].start, cy - y0 - hs[0].start)
    surf = _Surface(head, np.clip(head.Z / (0.15 * ch.head_c), 0, 1), col, R, origin, scale, ch.head_c)
    a_hair = _paint_face(ch, e, surf, px)
    col *= _shade(head)[..., None]
    rim = _soft(np.minimum(head.edge, -d_face) - 0.014, px)  # dark outline along the silhouette
    col *= (1 - 0.6 * rim * (1 - a_hair))[..., None]
    _blend(roi_h, a_head, col)
    zc = float(surface_z(ch, np.array(0.0), np.array(ch.nose_y)))
    nc = np.array([0, ch.nose_y, zc * 0.96], np.float32)
    ns = surf.window(-ch.nose_r * 1.3, ch.nose_r * 1.3, ch.nose_y - ch.nose_r * 1.5, ch.nose_y + ch.nose_r * 1.5)
    nose = ray_cast(u[ns], v[ns], R, nc, np.array([ch.nose_r, ch.nose_r * 1.2, ch.nose_r * 1.1], np.float32), px)
    ncol = skin * (0.92 * _shade(nose, 0.7))[..., None]
    _blend(roi_h[ns], nose.cover * 0.85 * (nose.Z > zc * 0.96 - 0.02), ncol)
    np.clip(roi, 0, 1, out=roi)
    P = exact.matmul(canonical_landmarks(ch, e), R.T)
    lm = np.stack([cx + P[:, 0] * scale, cy + P[:, 1] * scale], 1)
    return canvas, lm, box_from_landmarks(lm)
