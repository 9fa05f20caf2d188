"""Read a built dataset (``data/dataset/``): its clip table, its clips decoded, and its evaluation protocol
(``protocol/pairs.parquet``) checked against the clip table."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.domains import DOMAINS, TASKS
from ..core.errors import ConfigError, DatasetError
from ..core.io import read_table
from ..core.progress import progress
from ..core.video import read_frames
from ..faces.pose import POSE_DIM
from .protocol import PAIR_COLUMNS

CLIP_COLUMNS = ("clip_id", "domain", "n_frames", "path", "split")


def check_tasks(tasks: list[str] | tuple[str, ...] | None) -> list[str]:
    """Requested task names (all four when empty), in protocol order; unknown names are a ConfigError."""
    if not tasks:
        return list(TASKS)
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ConfigError(f"unknown task {bad[0]!r}", hint=f"tasks: {', '.join(TASKS)}")
    return [t for t in TASKS if t in tasks]


def clip_table(dataset_dir: str | Path) -> pd.DataFrame:
    """The dataset's ``clips.parquet`` (a DatasetError naming what to do when it is missing or incomplete)."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}", hint="build it with `dvc repro` first")
    clips = read_table(root / "clips.parquet", "clip table")
    missing = [c for c in CLIP_COLUMNS if c not in clips.columns]
    if missing:
        raise DatasetError(f"{root / 'clips.parquet'} lacks columns {missing}", hint="rebuild the dataset")
    return clips


def _split_pairs(root: Path, clips: pd.DataFrame, split: str) -> pd.DataFrame:
    """Every task's pairs of ``split``, unchecked (see :func:`load_pairs`)."""
    path = root / "protocol" / "pairs.parquet"
    if not path.is_file():
        raise DatasetError(f"evaluation protocol not found: {path}", hint="rebuild the dataset (build stage)")
    if split == "test":
        return pd.read_parquet(path)
    import json

    from .protocol import protocol_pairs

    spec_path = root / "protocol" / "protocol.json"
    spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
    return protocol_pairs(clips, root, spec, split)


def source_identities(dataset_dir: str | Path, split: str = "test") -> frozenset[str]:
    """The identities whose clips any pair of ``split`` (any task) uses as a source."""
    root = Path(dataset_dir)
    clips = clip_table(root)
    sources = _split_pairs(root, clips, split)["source_clip"]
    return frozenset(clips.loc[clips["clip_id"].isin(sources), "identity"].astype(str))


def load_pairs(dataset_dir: str | Path, tasks: list[str], split: str = "test") -> pd.DataFrame:
    """The protocol pairs of ``tasks``; every referenced clip must exist in ``split`` with enough frames.

    ``split="test"`` reads the built protocol (``protocol/pairs.parquet``). Another split gets pairs drawn the same
    way (the protocol's pairs per task, window length and motion threshold; seed 0) from its own clips: what a
    method scores on clips it trained on, against the protocol's test pairs, is its train-vs-test gap."""
    root = Path(dataset_dir)
    clips = clip_table(root)
    path = root / "protocol" / "pairs.parquet"
    pairs = _split_pairs(root, clips, split)
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise DatasetError(f"{path} lacks columns {missing}", hint="rebuild the dataset")
    for task in tasks:
        if not (pairs["task"] == task).any():
            src, drv = TASKS[task]
            have = sorted(clips.loc[clips["split"] == split, "domain"].unique())
            raise DatasetError(f"no pairs for task {task!r} in the {split} split of {root} (needs {src} and {drv} "
                               f"{split} clips; it has: {', '.join(have) or 'none'})",
                               hint="add clips of the missing domain, or pass --tasks without it")
    pairs = pairs[pairs["task"].isin(tasks)].copy()
    test = clips[clips["split"] == split].set_index("clip_id")
    for row in pairs.itertuples():
        for clip, first, n, dom in ((row.source_clip, row.source_frame, 1, TASKS[row.task][0]),
                                    (row.driving_clip, row.driving_start, row.n_frames, TASKS[row.task][1])):
            if clip not in test.index:
                raise DatasetError(f"pair {row.pair_id}: clip {clip!r} is not in the {split} split of {root}",
                                   hint="the protocol and the clip table are out of sync; rebuild the dataset")
            c = test.loc[clip]
            if c["domain"] != dom or first < 0 or n < 1 or first + n > int(c["n_frames"]):
                raise DatasetError(f"pair {row.pair_id}: clip {clip!r} ({c['domain']}, {int(c['n_frames'])} frames) "
                                   f"cannot supply {dom} frames [{first}, {first + n})", hint="rebuild the dataset")
            if not (root / str(c["path"])).is_file():
                raise DatasetError(f"clip file missing: {root / str(c['path'])}", hint="rebuild the dataset")
    order = {t: i for i, t in enumerate(tasks)}
    pairs["_o"] = pairs["task"].map(order)
    return pairs.sort_values(["_o", "pair_id"]).drop(columns="_o").reset_index(drop=True)


@dataclass
class Clip:
    """One decoded clip: frames ``(T, S, S, 3)`` uint8 and its pose vectors ``(T, 20)`` (NaN where unknown)."""

    clip_id: str
    domain: str
    identity: str
    split: str
    frames: np.ndarray
    motion: np.ndarray
    motion_true: bool = True  # False: pseudo pose vectors (3DMM fit), see toontalker_bench.train.pseudo_pose
    landmarks: np.ndarray | None = None  # (T, 68, 2) stored landmarks in crop pixels, NaN where unknown


def load_clips(dataset_dir: str | Path, split: str | None = None, size: int | None = None, max_frames: int = 0,
               domains: tuple[str, ...] = DOMAINS, max_clips: int = 0, frames_per_clip: int = 0) -> list[Clip]:
    """Decode the clips of ``split`` (every split when None), ``domains`` in that order and clips by id.

    ``size`` resizes frames (None keeps the stored size); ``max_frames`` > 0 keeps each clip's first frames;
    ``max_clips`` > 0 keeps each domain's first clips; ``frames_per_clip`` > 0 keeps that many evenly spaced frames.
    """
    root = Path(dataset_dir)
    table = clip_table(root)
    if split is not None:
        table = table[table["split"] == split]
    rows = []
    for dom in domains:
        sub = table[table["domain"] == dom].sort_values("clip_id")
        rows += list(sub.itertuples())[: max_clips or None]
    clips = []
    for row in progress(rows, desc=f"loading {split or 'all'} clips", unit="clip"):
        video = root / row.path
        frames = read_frames(video, 0, max_frames or None, size=(size, size) if size else None)
        npz = video.with_suffix(".npz")
        with np.load(npz) if npz.is_file() else contextlib.nullcontext({}) as z:
            motion = _per_frame(z, "motion", len(frames), (POSE_DIM,))
            landmarks = _per_frame(z, "landmarks68", len(frames), (68, 2))
        if frames_per_clip:
            idx = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), frames_per_clip)).round().astype(int))
            frames, motion, landmarks = frames[idx], motion[idx], landmarks[idx]
        clips.append(Clip(str(row.clip_id), str(row.domain), str(row.identity), str(row.split), frames, motion,
                          landmarks=landmarks))
    return clips


def _per_frame(stored: Mapping[str, np.ndarray], key: str, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """A clip's stored per-frame array ``key`` for its first ``n`` frames as float32, NaN where it has none."""
    out = np.full((n, *shape), np.nan, np.float32)
    if key in stored:
        a = np.asarray(stored[key], np.float32)[:n]
        out[: len(a)] = a
    return out
