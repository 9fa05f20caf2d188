"""The evaluation protocol: fixed, seeded (source, driving) pairs from the test split, one set per task.

Self-reenactment (``self_real``, ``self_cartoon``): the source image is the first frame of a driving window of one
test clip, and the driving video is that window of the same clip. Cross-domain (``real2cartoon``: a real clip drives
a cartoon source; ``cartoon2real``: the reverse): the source image is frame 0 of a test clip of the source domain and
the driving window comes from a test clip of the other domain. Clips are drawn round-robin through seeded
permutations so every test clip is used before any is reused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..domains import TASKS

PAIR_COLUMNS = ["task", "pair_id", "source_clip", "source_frame", "driving_clip", "driving_start", "n_frames"]


def _cycle(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` indices into ``range(n)``: concatenated seeded permutations."""
    out: list[int] = []
    while len(out) < k:
        out += rng.permutation(n).tolist()
    return out[:k]


def make_pairs(clips: pd.DataFrame, pairs_per_task: int, pair_frames: int, seed: int) -> pd.DataFrame:
    """Pairs from the ``split == "test"`` rows of ``clips`` (``clip_id, domain, n_frames``).

    A window is ``min(pair_frames, driving clip length)`` frames at a seeded start. Tasks whose domains have no
    test clip are left out (the build report says so).
    """
    test = clips[clips["split"] == "test"].sort_values("clip_id").reset_index(drop=True)
    rows = []
    for t, (task, (src_dom, drv_dom)) in enumerate(TASKS.items()):
        rng = np.random.default_rng([seed, t])
        src = test[test["domain"] == src_dom].reset_index(drop=True)
        drv = test[test["domain"] == drv_dom].reset_index(drop=True)
        if src.empty or drv.empty:
            continue
        si = _cycle(rng, len(src), pairs_per_task)
        di = si if src_dom == drv_dom else _cycle(rng, len(drv), pairs_per_task)
        for k, (a, b) in enumerate(zip(si, di)):
            d = drv.iloc[b]
            n = min(pair_frames, int(d["n_frames"]))
            start = int(rng.integers(0, int(d["n_frames"]) - n + 1))
            rows.append({"task": task, "pair_id": f"{task}-{k:03d}", "source_clip": str(src.iloc[a]["clip_id"]),
                         "source_frame": start if src_dom == drv_dom else 0, "driving_clip": str(d["clip_id"]),
                         "driving_start": start, "n_frames": n})
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    for c in ("source_frame", "driving_start", "n_frames"):
        df[c] = df[c].astype("int64")
    return df
