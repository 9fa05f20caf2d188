"""Load and validate a built dataset's evaluation protocol (``protocol/pairs.parquet``) against its clip table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.protocol import PAIR_COLUMNS, TASKS
from ..errors import ConfigError, DatasetError
from ..io import read_table

CLIP_COLUMNS = ("clip_id", "domain", "n_frames", "path", "split")


def check_tasks(tasks: list[str] | tuple[str, ...] | None) -> list[str]:
    """Requested task names (all four when empty), in protocol order; unknown names are a ConfigError."""
    if not tasks:
        return list(TASKS)
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ConfigError(f"unknown task {bad[0]!r}", hint=f"tasks: {', '.join(TASKS)}")
    return [t for t in TASKS if t in tasks]


def load_clips(dataset_dir: str | Path) -> pd.DataFrame:
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}", hint="build it with `dvc repro` first")
    clips = read_table(root / "clips.parquet", "clip table")
    missing = [c for c in CLIP_COLUMNS if c not in clips.columns]
    if missing:
        raise DatasetError(f"{root / 'clips.parquet'} lacks columns {missing}", hint="rebuild the dataset")
    return clips


def load_pairs(dataset_dir: str | Path, tasks: list[str]) -> pd.DataFrame:
    """The protocol pairs of ``tasks``; every referenced clip must exist in the test split with enough frames."""
    root = Path(dataset_dir)
    clips = load_clips(root)
    path = root / "protocol" / "pairs.parquet"
    if not path.is_file():
        raise DatasetError(f"evaluation protocol not found: {path}", hint="rebuild the dataset (build stage)")
    pairs = pd.read_parquet(path)
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise DatasetError(f"{path} lacks columns {missing}", hint="rebuild the dataset")
    for task in tasks:
        if not (pairs["task"] == task).any():
            src, drv = TASKS[task]
            have = sorted(clips.loc[clips["split"] == "test", "domain"].unique())
            raise DatasetError(f"{path} has no pairs for task {task!r} (needs {src} and {drv} test clips; the "
                               f"test split has: {', '.join(have) or 'none'})",
                               hint="add clips of the missing domain, or pass --tasks without it")
    pairs = pairs[pairs["task"].isin(tasks)].copy()
    test = clips[clips["split"] == "test"].set_index("clip_id")
    for row in pairs.itertuples():
        for clip, first, n, dom in ((row.source_clip, row.source_frame, 1, TASKS[row.task][0]),
                                    (row.driving_clip, row.driving_start, row.n_frames, TASKS[row.task][1])):
            if clip not in test.index:
                raise DatasetError(f"pair {row.pair_id}: clip {clip!r} is not in the test split of {root}",
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
