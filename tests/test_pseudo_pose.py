"""Pseudo pose vectors for clips without ground truth: the map is fitted on labelled clips and flagged as pseudo."""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.core.errors import DatasetError
from toontalker_bench.data.dataset import Clip
from toontalker_bench.faces.pose_map import N_FEATURES
from toontalker_bench.train.data import TrainData
from toontalker_bench.train.pseudo_pose import fill_pseudo_pose

SIZE = 16
RNG = np.random.default_rng(0)
A = RNG.normal(size=(N_FEATURES, 20)) * np.r_[np.full(17, 0.02), np.full(3, 5.0)]  # pose = features @ A + B,
B = np.r_[np.full(17, 0.5), np.zeros(3)]                                            # a known linear map


def _poses(n: int) -> np.ndarray:
    """Pose vectors (morphs well inside [0, 1]) that a 13-D 3DMM fit determines exactly."""
    return (RNG.normal(size=(n, N_FEATURES)) @ A + B).astype(np.float32)


def _clip(clip_id: str, domain: str, poses: np.ndarray, labelled: bool) -> Clip:
    """Frames whose first pixel row encodes the pose (read back by the stand-in estimator below)."""
    frames = RNG.integers(1, 255, (len(poses), SIZE, SIZE, 3), dtype=np.uint8)  # 0 marks a miss
    motion = poses if labelled else np.full_like(poses, np.nan)
    clip = Clip(clip_id, domain, clip_id, "train", frames, motion.copy())
    clip.true_poses = poses  # type: ignore[attr-defined]
    return clip


def _estimator_for(clips: list[Clip]):  # noqa: ANN202
    """Stand-in for the 3DMM fit: looks frames up by content and inverts the known map (NaN for a 'missed' frame)."""
    table = {c.frames[i].tobytes(): c.true_poses[i] for c in clips for i in range(len(c.frames))}  # type: ignore

    def estimate(frames):  # noqa: ANN001, ANN202
        u8 = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        out = np.stack([np.linalg.lstsq(A.T, table[f.tobytes()] - B, rcond=None)[0] for f in u8])
        out[(u8[:, 0, 0, 0] == 0)] = np.nan
        return out
    return estimate


def test_unlabelled_clip_gets_the_poses_a_known_map_implies() -> None:
    clips = [_clip("a", "cartoon", _poses(40), True), _clip("b", "real", _poses(40), True),
             _clip("c", "real", _poses(30), False)]
    clips[2].frames[3, 0, 0, 0] = 0  # a frame the fit misses stays unknown
    counts = fill_pseudo_pose(clips, _estimator_for(clips), fit_stride=2, ridge=1e-9)
    assert counts == {"true_clips": 2, "pseudo_clips": 1, "fit_frames": 40, "pseudo_frames": 29}
    got, want = clips[2].motion, clips[2].true_poses  # type: ignore[attr-defined]
    assert np.isnan(got[3]).all()
    keep = np.arange(30) != 3
    np.testing.assert_allclose(got[keep], want[keep], atol=1e-3)
    assert not clips[2].motion_true and clips[0].motion_true
    np.testing.assert_array_equal(clips[0].motion, clips[0].true_poses)  # type: ignore[attr-defined]
    batch = TrainData(clips, seed=0).batch(0, 64)
    assert not batch["real"]["motion_is_true"].all() and batch["real"]["motion_is_true"].any()
    assert batch["cartoon"]["motion_is_true"].all()


def test_no_ground_truth_anywhere_is_a_clear_error() -> None:
    clips = [_clip("c", "real", _poses(10), False)]
    with pytest.raises(DatasetError, match="none has ground truth"):
        fill_pseudo_pose(clips, _estimator_for(clips))


def test_all_labelled_needs_no_fit() -> None:
    clips = [_clip("a", "cartoon", _poses(5), True)]
    calls = []
    counts = fill_pseudo_pose(clips, lambda f: calls.append(f) or np.zeros((len(f), N_FEATURES)))
    assert counts["pseudo_clips"] == 0 and not calls


def test_withheld_domain_trains_on_pseudo_labels_fitted_on_the_other_domain() -> None:
    clips = [_clip("a", "cartoon", _poses(40), True), _clip("b", "real", _poses(30), True)]
    counts = fill_pseudo_pose(clips, _estimator_for(clips), fit_stride=2, ridge=1e-9, withhold=("real",))
    assert counts == {"true_clips": 1, "pseudo_clips": 1, "fit_frames": 20, "pseudo_frames": 30}
    assert clips[0].motion_true and not clips[1].motion_true  # the real clip's ground truth was never used as such
    np.testing.assert_allclose(clips[1].motion, clips[1].true_poses, atol=1e-3)  # type: ignore[attr-defined]
    with pytest.raises(DatasetError, match="none has ground truth"):  # withholding every domain leaves nothing to fit
        fill_pseudo_pose([_clip("c", "cartoon", _poses(8), True)], _estimator_for(clips), withhold=("cartoon",))
