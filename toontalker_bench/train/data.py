"""Training data: the train split held in memory at the profile's size, sampled as frame pairs per domain.

The sample for step ``s`` comes from a generator seeded with ``(seed, s)``, so the data order depends on nothing but
the seed and the step: ``--resume`` at step ``s`` sees exactly the batches an uninterrupted run would, and every DDP
rank draws the same global batch and keeps its own slice of it.

``train.pair_sampling`` chooses how a pair's driving frame is drawn: ``random`` (the default) takes two distinct frames
uniformly; ``motion`` draws the source uniformly and the driving frame with probability proportional to its landmark
displacement from the source (the mean distance over the 68 stored landmarks once each frame's translation and scale
are removed), so pairs that move more come up more often; ``mixed`` draws every odd-numbered pair of a batch by motion
and the rest at random. Clips without complete stored landmarks are drawn at random under every setting.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..core.domains import DOMAINS
from ..core.errors import ConfigError, DatasetError
from ..data.dataset import Clip, load_clips
from ..models.base import TrainingNeeds, to_tensor

log = logging.getLogger(__name__)


def normalised_shapes(landmarks: np.ndarray | None) -> np.ndarray | None:
    """``(T, K, 2)`` landmarks without each frame's translation and scale (centroid at 0, RMS radius 1), so what is
    left is head rotation and expression; None when some frame has none."""
    if landmarks is None or not np.isfinite(landmarks).all():
        return None
    x = landmarks.astype(np.float64) - landmarks.mean(1, keepdims=True)
    return x / np.sqrt((x ** 2).sum(-1).mean(1)).clip(1e-9)[:, None, None]


def driving_weights(shapes: np.ndarray, source: int) -> np.ndarray:
    """Probabilities over a clip's frames of being the driving frame for ``source``: proportional to each frame's
    mean landmark displacement from it (uniform over the other frames when none moves by a millionth of the face's
    size, which is rounding)."""
    w = np.linalg.norm(shapes - shapes[source], axis=-1).mean(1)
    w[source] = 0.0
    if not w.max() > 1e-6:
        w = np.ones(len(shapes))
        w[source] = 0.0
    return w / w.sum()


class TrainData:
    """Frame pairs ``(source, driving)`` from one clip, per domain; see the module docstring for the order."""

    def __init__(self, clips: list[Clip], seed: int, pair_sampling: str = "random") -> None:
        self.seed = int(seed)
        self.pair_sampling = pair_sampling
        self.by_domain = {d: [c for c in clips if c.domain == d and len(c.frames) >= 2] for d in DOMAINS}
        self.by_domain = {d: cs for d, cs in self.by_domain.items() if cs}
        if not self.by_domain:
            raise DatasetError("no training clips with at least 2 frames", hint="check the dataset's train split")
        self.size = next(iter(self.by_domain.values()))[0].frames.shape[1]
        self.pose_label_counts: dict[str, int] = {}
        self.shapes: dict[str, list[np.ndarray | None]] = {}
        if pair_sampling != "random":
            self.shapes = {d: [normalised_shapes(c.landmarks) for c in cs] for d, cs in self.by_domain.items()}
            lacking = [c.clip_id for d, cs in self.by_domain.items()
                       for c, shapes in zip(cs, self.shapes[d]) if shapes is None]
            if lacking:
                log.warning("train.pair_sampling=%s: %d of %d training clips have no complete stored landmarks, so "
                            "their pairs are drawn at random (first: %s)", pair_sampling, len(lacking),
                            sum(map(len, self.by_domain.values())), ", ".join(lacking[:5]))

    @classmethod
    def from_dataset(cls, dataset_dir: str | Path, size: int, seed: int, max_frames: int = 0,
                     needs: TrainingNeeds = TrainingNeeds(), pair_sampling: str = "random") -> TrainData:
        """The train split, with what the method needs beyond frames: ``needs.pose_vectors`` fills clips without
        ground-truth motion (and every clip of ``needs.pseudo_pose_domains``) with 3DMM pseudo labels."""
        clips = load_clips(dataset_dir, "train", size, max_frames)
        data = cls(clips, seed, pair_sampling)
        if needs.pose_vectors:
            from .pseudo_pose import fill_pseudo_pose

            data.pose_label_counts = fill_pseudo_pose(clips, withhold=needs.pseudo_pose_domains)
        return data

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.by_domain)

    def indices(self, step: int, batch_size: int, domain: str) -> np.ndarray:
        """``(batch_size, 3)`` rows of (clip, source frame, driving frame) for the global batch of ``step``."""
        rng = np.random.default_rng([self.seed, int(step), DOMAINS.index(domain)])
        clips = self.by_domain[domain]
        ci = rng.integers(0, len(clips), batch_size)
        out = np.empty((batch_size, 3), np.int64)
        for k, c in enumerate(ci):
            n = len(clips[c].frames)
            shapes = self.shapes[domain][c] if self._by_motion(k) else None
            if shapes is None:
                out[k] = (c, *rng.choice(n, 2, replace=False))
            else:
                s = int(rng.integers(n))
                out[k] = (c, s, rng.choice(n, p=driving_weights(shapes, s)))
        return out

    def _by_motion(self, k: int) -> bool:
        """Whether pair ``k`` of a global batch has its driving frame drawn by motion (``mixed``: the odd ones, so
        every DDP rank's even-sized slice is half and half)."""
        return self.pair_sampling == "motion" or (self.pair_sampling == "mixed" and k % 2 == 1)

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, dict[str, torch.Tensor]]:
        """This rank's slice of the global batch of ``step`` (``batch_size`` pairs per domain)."""
        if batch_size % world:
            raise ConfigError(f"train.batch_size={batch_size} is not divisible by the {world} DDP processes")
        per = batch_size // world
        out = {}
        for domain, clips in self.by_domain.items():
            rows = self.indices(step, batch_size, domain)[rank * per:(rank + 1) * per]
            src = np.stack([clips[c].frames[s] for c, s, _ in rows])
            drv = np.stack([clips[c].frames[d] for c, _, d in rows])
            ms = np.stack([clips[c].motion[s] for c, s, _ in rows])
            md = np.stack([clips[c].motion[d] for c, _, d in rows])
            true = np.array([clips[c].motion_true for c, _, _ in rows])
            out[domain] = {
                "source": to_tensor(src), "driving": to_tensor(drv),
                "motion_source": torch.from_numpy(ms), "motion_driving": torch.from_numpy(md),
                "motion_is_true": torch.from_numpy(np.isfinite(ms).all(1) & np.isfinite(md).all(1) & true),
            }
        return out

    def preview(self, n_frames: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """A fixed ``(source (3,S,S), driving (T,3,S,S))`` per domain for validation grids: each domain's first clip."""
        out = {}
        for domain, clips in self.by_domain.items():
            frames = clips[0].frames
            idx = np.linspace(0, len(frames) - 1, n_frames + 1).round().astype(int)
            out[domain] = (to_tensor(frames[idx[0]]), to_tensor(frames[idx[1:]]))
        return out


def move(batch: dict[str, dict[str, torch.Tensor]], device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    return {d: {k: v.to(device, non_blocking=True) for k, v in b.items()} for d, b in batch.items()}


def split_micro(batch: dict[str, dict[str, torch.Tensor]], n: int) -> list[dict[str, dict[str, torch.Tensor]]]:
    """Split a batch into ``n`` equal micro-batches (gradient accumulation)."""
    if n == 1:
        return [batch]
    for b in batch.values():
        if len(b["source"]) % n:
            raise ConfigError(f"per-process batch of {len(b['source'])} is not divisible by train.grad_accum={n}")
    return [{d: {k: v.chunk(n)[i] for k, v in b.items()} for d, b in batch.items()} for i in range(n)]
