"""Static cartoon backdrops for the demo corpus's shots."""

from __future__ import annotations

import numpy as np


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x / w, y / h


def background(rng: np.random.Generator, h: int, w: int, landscape: bool = False) -> np.ndarray:
    """A static cartoon backdrop (float32 RGB in [0, 1]); ``landscape`` draws an outdoor scene (no-face shots)."""
    x, y = _grid(h, w)
    c1, c2 = rng.uniform(0.35, 0.95, 3).astype(np.float32), rng.uniform(0.2, 0.9, 3).astype(np.float32)
    img = c1 + (c2 - c1) * y[..., None]
    kind = 5 if landscape else int(rng.integers(5))
    if kind == 1:  # wall and floor with a framed picture
        floor = y > rng.uniform(0.7, 0.85)
        img[floor] = rng.uniform(0.25, 0.6, 3)
        fx, fy = rng.uniform(0.05, 0.65), rng.uniform(0.1, 0.3)
        frame = (x > fx) & (x < fx + 0.25) & (y > fy) & (y < fy + 0.22)
        img[frame] = rng.uniform(0.1, 0.9, 3)
    elif kind == 2:  # polka dots
        period = rng.uniform(0.06, 0.12)
        d = np.hypot((x * w / h) % period - period / 2, y % period - period / 2)
        img = np.where((d < period * 0.28)[..., None], img * 0.75 + 0.25, img)
    elif kind == 3:  # diagonal stripes
        s = np.sin((x * w / h + y) * rng.uniform(12, 30)) > 0
        img = np.where(s[..., None], img * 0.85, img)
    elif kind == 4:  # bokeh
        for _ in range(14):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.09)
            a = np.clip(1 - np.hypot((x - cx) * w / h, y - cy) / r, 0, 1) ** 0.5 * 0.35
            img += a[..., None] * (rng.uniform(0.6, 1.0, 3) - img)
    elif kind == 5:  # sky, hills, sun and trees
        sky, haze = np.array([0.45, 0.7, 0.95], np.float32), np.array([0.85, 0.92, 1.0], np.float32)
        img = sky + (haze - sky) * y[..., None]
        sx, sy = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.3)
        img[np.hypot((x - sx) * w / h, y - sy) < 0.07] = [1.0, 0.9, 0.4]
        for k, base in enumerate((0.55, 0.7)):
            horizon = base + 0.06 * np.sin(x * rng.uniform(4, 9) + rng.uniform(0, 6))
            img[y > horizon] = np.array([0.3, 0.62, 0.3], np.float32) * (0.85 + 0.15 * k)
        for _ in range(int(rng.integers(2, 6))):
            tx, ty = rng.uniform(0.05, 0.95), rng.uniform(0.6, 0.75)
            img[(np.abs(x - tx) < 0.01) & (y > ty) & (y < ty + 0.12)] = [0.4, 0.25, 0.12]
            img[np.hypot((x - tx) * w / h, y - ty) < 0.06] = np.array([0.15, 0.45, 0.2]) * rng.uniform(0.8, 1.2)
    return np.clip(img, 0, 1).astype(np.float32)
