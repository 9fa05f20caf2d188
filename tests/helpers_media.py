"""Small generated test videos with known structure (shot cuts, truncation) for the data-stage tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from toontalker_bench.core.video import write_video


def multishot_frames(shot_lengths: Sequence[int], size: tuple[int, int] = (320, 180),
                     seed: int = 0) -> Iterator[np.ndarray]:
    """RGB frames: each shot has its own random colour texture plus a slowly moving square.

    Consecutive shots differ in hue and layout, so every shot boundary is a hard cut; inside a shot the content
    changes only a little from frame to frame.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for k, n in enumerate(shot_lengths):
        base = rng.integers(0, 256, size=3)
        grad = (xx / w * rng.uniform(40, 120) + yy / h * rng.uniform(40, 120))[..., None]
        tex = rng.integers(-20, 21, size=(h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
        img = np.clip(base[None, None] * 0.6 + grad + tex + (k % 2) * 60, 0, 255)
        side = h // 4
        for i in range(n):
            f = img.copy()
            x0 = int((w - side) * (0.1 + 0.8 * i / max(n - 1, 1)))
            y0 = (h - side) // 2
            f[y0:y0 + side, x0:x0 + side] = 255 - base
            yield f.astype(np.uint8)


def write_multishot(path: str | Path, shot_lengths: Sequence[int] = (40, 55, 30, 45), size: tuple[int, int] = (320, 180),
                    fps: float = 25.0, seed: int = 0) -> list[int]:
    """Write a multi-shot H.264 video; returns the cut frames (first frame of every shot after the first)."""
    write_video(path, multishot_frames(shot_lengths, size, seed), fps=fps)
    return [int(c) for c in np.cumsum(shot_lengths)[:-1]]


def write_plain(path: str | Path, n: int = 50, size: tuple[int, int] = (160, 96), fps: float = 25.0) -> int:
    """A short single-shot video whose frame i has mean grey level ~ (5 * i) % 250 (frames are identifiable)."""
    w, h = size
    frames = (np.full((h, w, 3), (5 * i) % 250, np.uint8) for i in range(n))
    return write_video(path, frames, fps=fps)


def truncate(src: str | Path, dest: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dest`` (a download cut off part-way)."""
    data = Path(src).read_bytes()
    Path(dest).write_bytes(data[: int(len(data) * fraction)])
    return Path(dest)


def remux_faststart(src: str | Path, dest: str | Path) -> Path:
    """Copy ``src`` into an mp4 whose index (moov) comes first, as web videos are; truncating it leaves a file
    whose header still promises every frame."""
    import av

    with av.open(str(src)) as inp, av.open(str(dest), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return Path(dest)
