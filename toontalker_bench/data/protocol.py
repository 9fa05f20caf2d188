"""The evaluation protocol: fixed, seeded (source, driving) pairs from the test split, one set per task.

Self-reenactment (``self_real``, ``self_cartoon``): the source image is the first frame of a driving window of one
test clip, and the driving video is that window of the same clip. Cross-domain (``real2cartoon``: a real clip drives
a cartoon source; ``cartoon2real``: the reverse): the source image is frame 0 of a test clip of the source domain and
the driving window comes from a test clip of the other domain.

Driving windows are chosen where the driving clip moves (protocol version 2): a window of ``pair_frames`` frames
is eligible when its head motion — the largest range (max - min) of yaw, pitch or roll over the window — reaches
``min_motion_deg``. Motion comes from the clip's ground truth where the corpus has it, else from the 3DMM fit of its
stored landmarks (the pair's ``motion_source`` says which). A clip with no eligible window contributes its most
moving window only when no clip of its domain has an eligible one (``below_threshold`` marks those pairs). Clips are
drawn round-robin through seeded permutations so every eligible clip is used before any is reused, and a clip's
windows are drawn without repetition while it has unused ones.

Where a cross-domain window starts matters for expression (``cross_start``). Relative motion adds the driver's change
since its first frame to the source's expression, and a morph cannot go below closed: a driver whose window opens
mid-word, its mouth half open, asks a closed-mouthed source to close its mouth further, and the exact answer differs
from the driver's change by construction (``python -m benchmarks.expression_noise`` measures how much). ``any``
(protocol version 2) draws among all eligible windows; ``neutral`` (protocol version 3, the default) only among those
that start with the mouth among the least open of the clip's eligible starts (inner-lip gap over the inter-ocular
distance of the stored landmarks, at most its :data:`NEUTRAL_QUANTILE` quantile), so the driver starts from a face as
closed as the source's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.domains import TASKS

PROTOCOL_VERSION = 3  # 3: cross-domain windows start neutral by default (``cross_start``)
PAIR_COLUMNS = ["task", "pair_id", "source_clip", "source_frame", "driving_clip", "driving_start", "n_frames",
                "motion_range_deg", "motion_source", "below_threshold"]
WINDOW_STRIDE = 4  # candidate window starts every this many frames
CROSS_STARTS = ("any", "neutral")
NEUTRAL_QUANTILE = 0.25

#: clip row -> (angles (T, 3) degrees with NaN where unknown, "ground_truth" | "estimated")
MotionFn = Callable[[pd.Series], tuple[np.ndarray, str]]
#: clip row -> mouth opening (T,) per frame (NaN where unknown)
OpeningFn = Callable[[pd.Series], np.ndarray]


def clip_motion(root: Path) -> MotionFn:
    """Head angles of a built clip: ground truth from its ``.npz`` where complete, else the BFM fit of its stored
    landmarks (the same estimator the motion metrics use)."""
    def angles(row: pd.Series) -> tuple[np.ndarray, str]:
        with np.load(root / Path(str(row["path"])).with_suffix(".npz")) as z:
            motion = np.asarray(z["motion"], np.float64)
            lm = np.asarray(z["landmarks68"], np.float64)
        if np.isfinite(motion[:, 17:20]).all():
            return motion[:, 17:20], "ground_truth"
        from ..faces.bfm import default_bfm

        return default_bfm().estimate(lm).angles, "estimated"

    return angles


def mouth_opening(landmarks68: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)`` landmarks -> ``(T,)`` inner-lip gap over the distance between the eye centres."""
    lm = np.asarray(landmarks68, np.float64)
    iod = np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=-1)
    gap = sum(np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))) / 3
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / iod


def protocol_pairs(clips: pd.DataFrame, root: Path, spec: dict[str, Any], split: str = "test",
                   cross_start: str | None = None) -> pd.DataFrame:
    """The pairs a protocol spec (``protocol/protocol.json``) draws from the clips of a built dataset at ``root``
    (``cross_start`` overrides the spec's; specs before version 3 carry none and meant ``any``)."""
    cross_start = cross_start or str(spec.get("cross_start", "any"))
    return make_pairs(clips, int(spec.get("pairs_per_task", 8)), int(spec.get("pair_frames", 32)),
                      int(spec.get("seed", 0)), float(spec.get("min_motion_deg", 0.0)), clip_motion(root), split,
                      cross_start, clip_opening(root) if cross_start == "neutral" else None)


def clip_opening(root: Path) -> OpeningFn:
    """Mouth opening of a built clip's frames, from its stored landmarks (every clip has them, ground truth or not)."""
    def opening(row: pd.Series) -> np.ndarray:
        with np.load(root / Path(str(row["path"])).with_suffix(".npz")) as z:
            return mouth_opening(z["landmarks68"])

    return opening


def neutral_starts(windows: list[tuple[int, float]], opening: np.ndarray) -> list[tuple[int, float]]:
    """The windows whose first frame's mouth opening is at most the :data:`NEUTRAL_QUANTILE` quantile of the
    windows' (all of them where the opening is unknown)."""
    values = np.array([opening[s] if s < len(opening) else np.nan for s, _ in windows])
    if not np.isfinite(values).any():
        return windows
    limit = np.nanquantile(values, NEUTRAL_QUANTILE)
    return [w for w, v in zip(windows, values) if np.isfinite(v) and v <= limit]


def window_ranges(angles: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate window starts (every :data:`WINDOW_STRIDE` frames, and the last possible one) and each window's
    head-motion range: the largest max - min of yaw, pitch or roll over the window (NaN frames ignored)."""
    last = len(angles) - n
    starts = np.unique(np.r_[np.arange(0, last + 1, WINDOW_STRIDE), last]) if last >= 0 else np.zeros(0, int)
    ranges = np.array([np.nanmax(np.nanmax(angles[s:s + n], 0) - np.nanmin(angles[s:s + n], 0))
                       if np.isfinite(angles[s:s + n]).any() else 0.0 for s in starts])
    return starts.astype(int), ranges


def _cycle(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` indices into ``range(n)``: concatenated seeded permutations."""
    out: list[int] = []
    while len(out) < k:
        out += rng.permutation(n).tolist()
    return out[:k]


class _Windows:
    """Eligible driving windows of one domain's test clips, drawn without repetition per clip while possible."""

    def __init__(self, clips: pd.DataFrame, n_max: int, min_motion: float, motion: MotionFn,
                 rng: np.random.Generator, opening: OpeningFn | None = None) -> None:
        self.rng = rng
        self.options: list[tuple[pd.Series, int, list[tuple[int, float]], str, bool]] = []
        fallback = []
        for _, row in clips.iterrows():
            n = min(n_max, int(row["n_frames"]))
            angles, source = motion(row)
            starts, ranges = window_ranges(angles, n)
            ok = [(int(s), float(r)) for s, r in zip(starts, ranges) if r >= min_motion]
            if ok and opening is not None:
                ok = neutral_starts(ok, opening(row))
            if ok:
                self.options.append((row, n, ok, source, False))
            elif len(starts):
                best = int(np.argmax(ranges))
                fallback.append((row, n, [(int(starts[best]), float(ranges[best]))], source, True))
        if not self.options:  # no clip moves enough: use each clip's most moving window, marked
            self.options = fallback
        self.used: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return len(self.options)

    def draw(self, i: int) -> tuple[pd.Series, int, int, float, str, bool]:
        row, n, windows, source, below = self.options[i]
        used = self.used.setdefault(i, set())
        free = [w for w in range(len(windows)) if w not in used] or list(range(len(windows)))
        w = free[int(self.rng.integers(len(free)))]
        used.add(w)
        start, rng_deg = windows[w]
        return row, n, start, rng_deg, source, below


def make_pairs(clips: pd.DataFrame, pairs_per_task: int, pair_frames: int, seed: int, min_motion_deg: float = 0.0,
               motion: MotionFn | None = None, split: str = "test", cross_start: str = "any",
               opening: OpeningFn | None = None) -> pd.DataFrame:
    """Pairs from the ``split`` rows of ``clips`` (``clip_id, domain, n_frames``, ``path`` when ``motion`` reads the
    clips). Without ``motion`` every window counts as moving (range 0, source ``none``). Tasks whose domains have no
    clip in the split are left out (the build report says so). The benchmark's protocol is the test split's; pairs of
    the train split measure a method's train-vs-test gap. ``cross_start="neutral"`` needs ``opening`` (see the
    module docstring)."""
    if cross_start not in CROSS_STARTS:
        raise ValueError(f"cross_start must be one of {CROSS_STARTS}, not {cross_start!r}")
    if cross_start == "neutral" and opening is None:
        raise ValueError("cross_start='neutral' needs the clips' mouth opening (opening=clip_opening(root))")
    test = clips[clips["split"] == split].sort_values("clip_id").reset_index(drop=True)
    motion = motion or (lambda row: (np.zeros((int(row["n_frames"]), 3)), "none"))
    rows = []
    for t, (task, (src_dom, drv_dom)) in enumerate(TASKS.items()):
        rng = np.random.default_rng([seed, t])
        src = test[test["domain"] == src_dom].reset_index(drop=True)
        drv = test[test["domain"] == drv_dom].reset_index(drop=True)
        if src.empty or drv.empty:
            continue
        neutral = cross_start == "neutral" and src_dom != drv_dom
        windows = _Windows(drv, pair_frames, min_motion_deg, motion, rng, opening if neutral else None)
        if not len(windows):
            continue
        di = _cycle(rng, len(windows), pairs_per_task)
        si = _cycle(rng, len(src), pairs_per_task)
        for k, (a, b) in enumerate(zip(si, di)):
            d, n, start, rng_deg, source, below = windows.draw(b)
            self_task = src_dom == drv_dom
            rows.append({"task": task, "pair_id": f"{task}-{k:03d}",
                         "source_clip": str(d["clip_id"] if self_task else src.iloc[a]["clip_id"]),
                         "source_frame": start if self_task else 0, "driving_clip": str(d["clip_id"]),
                         "driving_start": start, "n_frames": n, "motion_range_deg": round(rng_deg, 3),
                         "motion_source": source, "below_threshold": below})
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    for c in ("source_frame", "driving_start", "n_frames"):
        df[c] = df[c].astype("int64")
    df["motion_range_deg"] = df["motion_range_deg"].astype("float64")
    df["below_threshold"] = df["below_threshold"].astype(bool)
    return df
