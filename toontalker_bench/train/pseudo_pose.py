"""Pseudo pose vectors for training clips that have no ground-truth motion (methods that need paired pose data).

A clip's 20-D pose vectors (17 morphs + yaw/pitch/roll, :mod:`toontalker_bench.faces.pose`) come with the demo
corpus; scraped footage has none. For those clips each frame gets the metrics' 3DMM fit (yaw/pitch/roll + 10-D
expression), mapped to a pose vector by a ridge map fitted on the frames whose pose vector *is* known — the analogue
of AnimeCeleb's morph fits, and the same :class:`~toontalker_bench.models.animeceleb.PoseVectorMap` the method uses
at inference. Frames the fit misses stay NaN (the trainer drops them). Filled clips are flagged ``motion_true =
False``, so methods count their samples as pseudo-labelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from ..core.errors import DatasetError
from ..core.progress import progress
from ..data.dataset import Clip
from ..models.base import to_tensor

log = logging.getLogger(__name__)

#: ``frames (T, 3, H, W) in [0, 1] -> (T, 13)`` 3DMM yaw/pitch/roll + expression, NaN rows where no face was fitted.
FeatureFn = Callable[[torch.Tensor], np.ndarray]


def _features(clip: Clip, estimator: FeatureFn, idx: np.ndarray, chunk: int = 64) -> np.ndarray:
    return np.concatenate([estimator(to_tensor(clip.frames[idx[i:i + chunk]]))
                           for i in range(0, len(idx), chunk)])


def fill_pseudo_pose(clips: list[Clip], estimator: FeatureFn | None = None, fit_stride: int = 4,
                     ridge: float = 1e-3, withhold: tuple[str, ...] = ()) -> dict[str, int]:
    """Give every clip without ground-truth motion pseudo pose vectors (in place).

    Clips of the ``withhold`` domains count as unlabelled even when the corpus has their ground truth (real footage
    never comes with pose vectors, so a method must not train on the demo corpus's). The map is fitted on every
    ``fit_stride``-th labelled frame of the other clips. Returns counts: ``true_clips``,
    ``pseudo_clips``, ``fit_frames`` (labelled frames the map was fitted on) and ``pseudo_frames`` (frames that got a
    pose vector). Raises :class:`DatasetError` when some clips need pseudo labels but no clip has ground truth.
    """
    from ..faces.pose_map import PoseVectorMap, pose_features

    estimator = estimator or pose_features
    unlabelled = [c for c in clips if c.domain in withhold or not np.isfinite(c.motion).any()]
    labelled = [c for c in clips if c.domain not in withhold and np.isfinite(c.motion).any()]
    counts = {"true_clips": len(labelled), "pseudo_clips": len(unlabelled), "fit_frames": 0, "pseudo_frames": 0}
    if not unlabelled:
        return counts
    if not labelled:
        raise DatasetError(f"{len(unlabelled)} training clips have no pose vectors and none has ground truth to fit "
                           "the 3DMM -> pose-vector map on",
                           hint="add clips with ground-truth motion (e.g. the demo corpus) to the train split")
    pmap = PoseVectorMap(ridge=ridge)
    for clip in progress(labelled, desc="fitting the 3DMM -> pose-vector map", unit="clip"):
        idx = np.flatnonzero(np.isfinite(clip.motion).all(1))[::fit_stride]
        if len(idx):
            counts["fit_frames"] += pmap.update(_features(clip, estimator, idx), clip.motion[idx])
    if not pmap.fitted:
        raise DatasetError(f"only {counts['fit_frames']} labelled frames had a 3DMM fit; too few to map 13 features "
                           "to pose vectors", hint="check that the labelled clips show detectable faces")
    for clip in progress(unlabelled, desc="pseudo pose vectors (3DMM fit)", unit="clip"):
        poses = pmap(_features(clip, estimator, np.arange(len(clip.frames)))).numpy().astype(np.float32)
        clip.motion = poses
        clip.motion_true = False
        counts["pseudo_frames"] += int(np.isfinite(poses).all(1).sum())
    log.info("pseudo pose vectors: %d clips, %d frames (map fitted on %d labelled frames of %d clips)",
             counts["pseudo_clips"], counts["pseudo_frames"], counts["fit_frames"], counts["true_clips"])
    return counts
