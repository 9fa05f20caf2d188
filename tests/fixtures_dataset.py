"""A tiny built dataset (``data/dataset`` layout, see docs/architecture.md) made of synthetic moving faces.

Used by harness tests (and free for others) until a real ``dvc repro`` output is at hand. Each clip is a flat-colour
("cartoon") or noise-textured ("real") face whose head position, mouth opening and blinks follow a known pose
vector, so ``motion`` is ground truth and the 68 landmarks move with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from toontalker_bench.core.io import write_table
from toontalker_bench.core.video import write_video
from toontalker_bench.data.protocol import make_pairs
from toontalker_bench.faces.pose import MORPHS, POSE_DIM

_MOUTH = MORPHS.index("mouth_open")
_BLINK_L, _BLINK_R = MORPHS.index("blink_left"), MORPHS.index("blink_right")


def _pose_track(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    motion = np.zeros((n, POSE_DIM), np.float32)
    ph = rng.uniform(0, 2 * np.pi, 3)
    motion[:, _MOUTH] = 0.5 + 0.5 * np.sin(t / 3.0 + ph[0])
    blink = (np.sin(t / 2.0 + ph[1]) > 0.8).astype(np.float32)
    motion[:, _BLINK_L] = motion[:, _BLINK_R] = blink
    motion[:, 17] = 20.0 * np.sin(t / 5.0 + ph[2])  # yaw, degrees
    motion[:, 18] = 8.0 * np.cos(t / 7.0 + ph[1])  # pitch
    return motion


def _landmarks(motion: np.ndarray, size: int) -> np.ndarray:
    """68 iBUG-ordered points on a simple face model driven by the pose vector (crop pixels)."""
    n = len(motion)
    out = np.zeros((n, 68, 2), np.float32)
    for i, m in enumerate(motion):
        cx = size / 2 + m[17] / 45.0 * size * 0.2
        cy = size / 2 - m[18] / 45.0 * size * 0.2
        rx, ry = size * 0.28, size * 0.36
        a = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
        out[i, 0:17] = np.stack([cx - rx * np.cos(a), cy + ry * np.sin(a) * 0.9], 1)
        out[i, 17:22] = np.stack([cx - rx * np.linspace(0.8, 0.2, 5), np.full(5, cy - ry * 0.45)], 1)
        out[i, 22:27] = np.stack([cx + rx * np.linspace(0.2, 0.8, 5), np.full(5, cy - ry * 0.45)], 1)
        out[i, 27:31] = np.stack([np.full(4, cx), cy + ry * np.linspace(-0.3, 0.1, 4)], 1)
        out[i, 31:36] = np.stack([cx + rx * np.linspace(-0.2, 0.2, 5), np.full(5, cy + ry * 0.15)], 1)
        for k, ex in ((36, cx - rx * 0.45), (42, cx + rx * 0.45)):
            open_ = (1.0 - m[_BLINK_L]) * ry * 0.08
            e = np.linspace(0, 2 * np.pi, 6, endpoint=False)
            out[i, k:k + 6] = np.stack([ex + rx * 0.18 * np.cos(e), cy - ry * 0.25 + open_ * np.sin(e)], 1)
        mo = m[_MOUTH] * ry * 0.2
        e = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        out[i, 48:60] = np.stack([cx + rx * 0.4 * np.cos(e), cy + ry * 0.45 + (ry * 0.05 + mo) * np.sin(e)], 1)
        e = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        out[i, 60:68] = np.stack([cx + rx * 0.25 * np.cos(e), cy + ry * 0.45 + mo * 0.6 * np.sin(e)], 1)
    return out


def _render(motion: np.ndarray, lm68: np.ndarray, size: int, domain: str, colour: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = rng.uniform(-25, 25, (size, size, 1)).astype(np.float32) if domain == "real" else 0.0
    frames = np.empty((len(motion), size, size, 3), np.uint8)
    bg = np.array([40, 60, 90] if domain == "real" else [235, 225, 200], np.float32)
    for i, (m, lm) in enumerate(zip(motion, lm68)):
        img = np.broadcast_to(bg, (size, size, 3)).copy()
        cx, cy = lm[27:31, 0].mean(), lm[27:31, 1].mean()
        face = ((xx - cx) / (size * 0.28)) ** 2 + ((yy - cy) / (size * 0.36)) ** 2 <= 1.0
        img[face] = colour
        for k in (36, 42):
            ex, ey = lm[k:k + 6].mean(0)
            h = max(float(np.ptp(lm[k:k + 6, 1])), 0.6)
            eye = ((xx - ex) / (size * 0.05)) ** 2 + ((yy - ey) / h) ** 2 <= 1.0
            img[eye] = (20, 20, 20)
        mx, my = lm[48:60].mean(0)
        mh = max(float(np.ptp(lm[48:60, 1])) / 2, 0.8)
        mouth = ((xx - mx) / (size * 0.11)) ** 2 + ((yy - my) / mh) ** 2 <= 1.0
        img[mouth] = (150, 30, 40)
        frames[i] = np.clip(img + texture, 0, 255).astype(np.uint8)
    return frames


def build_fixture_dataset(root: str | Path, size: int = 64, n_frames: int = 24, train_clips: int = 3,
                          test_clips: int = 2, pairs_per_task: int = 2, pair_frames: int = 8, seed: int = 0,
                          domains: tuple[str, ...] = ("real", "cartoon"), with_protocol: bool = True) -> Path:
    """Write a tiny dataset to ``root`` (clips.parquet, clips/*.mp4|npz, protocol/pairs.parquet) and return it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for domain in domains:
        for split, count in (("train", train_clips), ("test", test_clips)):
            for j in range(count):
                clip_id = f"{domain}-{split}-{j:02d}"
                motion = _pose_track(rng, n_frames)
                lm68 = _landmarks(motion, size)
                colour = rng.uniform(90, 230, 3).astype(np.float32)
                frames = _render(motion, lm68, size, domain, colour, rng)
                write_video(root / "clips" / f"{clip_id}.mp4", frames, fps=25.0)
                lm5 = np.stack([lm68[:, 36:42].mean(1), lm68[:, 42:48].mean(1), lm68[:, 30],
                                lm68[:, 48], lm68[:, 54]], 1).astype(np.float32)
                gt_box = np.stack([lm68[..., 0].min(1), lm68[..., 1].min(1), lm68[..., 0].max(1),
                                   lm68[..., 1].max(1)], 1).astype(np.float32)
                np.savez(root / "clips" / f"{clip_id}.npz", landmarks68=lm68, landmarks5=lm5, motion=motion,
                         gt_box=gt_box)
                rows.append(dict(clip_id=clip_id, tube_id=f"{clip_id}-t", source_id=f"{domain}-src-{split}-{j}",
                                 domain=domain, identity=f"{domain}-id{j}-{split}", n_frames=n_frames, fps=25.0,
                                 size=size, crop_x0=0, crop_y0=0, crop_size=size, path=f"clips/{clip_id}.mp4",
                                 split=split))
    clips = pd.DataFrame(rows)
    write_table(root / "clips.parquet", clips)
    if with_protocol:
        write_table(root / "protocol" / "pairs.parquet", make_pairs(clips, pairs_per_task, pair_frames, seed))
    return root


FAST = ["--set", "eval.self_metrics=[l1,psnr,ssim]", "--set", "eval.cross_metrics=[l1]"]  # cheap metrics only


def cli(dataset: Path, *args: str) -> int:
    """``toontalker-bench`` on ``dataset`` with the cheap metrics; its exit status."""
    from toontalker_bench.cli import main

    return main(["--set", f"build.out_dir={dataset}", *FAST, *args])
