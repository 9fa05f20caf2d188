"""Pictures of results: sample grids and before/after strips (PNG), and ``source | driving | output`` videos (MP4 + a
small animated WebP)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io import atomic_path
from .video import write_video

PAD = 2


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = PAD, fill: int = 255) -> np.ndarray:
    """Tile uint8 ``(H, W, 3)`` images (all the same size) into rows; short rows are padded with ``fill``."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img
    return out


def save_png(path: str | Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def strip_image(source: np.ndarray, driving: list[np.ndarray], outputs: list[np.ndarray], height: int = 160,
                gap: int = 4) -> np.ndarray:
    """A before/after picture: the source on the left (two rows tall), then per chosen time the driving frame over
    the output frame, every image scaled to ``height`` px tall (the source to two rows and the gap), on white."""
    import cv2

    def fit(img: np.ndarray, h: int) -> np.ndarray:
        w = max(1, round(img.shape[1] * h / img.shape[0]))
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_CUBIC)

    left = fit(source, 2 * height + gap)
    tops, bottoms = [fit(f, height) for f in driving], [fit(f, height) for f in outputs]
    cols = [max(t.shape[1], b.shape[1]) for t, b in zip(tops, bottoms)]
    canvas = np.full((2 * height + gap, left.shape[1] + sum(c + gap for c in cols), 3), 255, np.uint8)
    canvas[:, :left.shape[1]] = left
    x = left.shape[1] + gap
    for t, b, c in zip(tops, bottoms, cols):
        canvas[:height, x:x + t.shape[1]] = t
        canvas[height + gap:, x:x + b.shape[1]] = b
        x += c + gap
    return canvas


def triptych(source: np.ndarray, driving: np.ndarray, output: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` frames showing source | driving | output side by side (even sizes for H.264)."""
    t = len(driving)
    src = np.broadcast_to(source, (t, *source.shape))
    frames = np.concatenate([src, driving, output], axis=2)
    h, w = frames.shape[1:3]
    return np.ascontiguousarray(frames[:, : h - h % 2, : w - w % 2])


#: the board's sample animation: width in px and WebP quality; 60-150 KB for 64 frames of 4 stacked pairs, where
#: a 256-px GIF of the same frames took 2-4 MB (the leaderboard keeps one per row in git)
SAMPLE_WIDTH, SAMPLE_QUALITY = 128, 40


def save_animation(path: str | Path, frames: np.ndarray, fps: float, width: int = SAMPLE_WIDTH) -> Path:
    """Write ``frames`` (``(T, H, W, 3)`` uint8) as a looping lossy animated WebP ``width`` px wide (never enlarged)."""
    from PIL import Image

    scale = min(1.0, width / frames.shape[2])
    size = (max(2, round(frames.shape[2] * scale)), max(2, round(frames.shape[1] * scale)))
    images = [Image.fromarray(f).resize(size, Image.LANCZOS) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                       loop=0, quality=SAMPLE_QUALITY, method=4, minimize_size=True)
    return Path(path)


def save_clip(stem: str | Path, frames: np.ndarray, fps: float = 12.5) -> tuple[Path, Path]:
    """Write ``<stem>.mp4`` (H.264, full size) and the board's small ``<stem>.webp``; returns both paths."""
    stem = Path(stem)
    mp4 = stem.with_suffix(".mp4")
    write_video(mp4, frames, fps=fps)
    return mp4, save_animation(stem.with_suffix(".webp"), frames, fps)
