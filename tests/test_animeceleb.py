"""AnimeCeleb-style baseline: pose-vector map fit, relative driving, label bookkeeping, training, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from toontalker_bench.core.errors import UserError
from toontalker_bench.faces.pose_map import N_FEATURES, PoseVectorMap
from toontalker_bench.models.animeceleb import AnimeCeleb, fill_missing
from toontalker_bench.models.base import METHODS
from toontalker_bench.models.checkpoint import load_checkpoint, save_checkpoint
from toontalker_bench.models.registry import load_profile

SIZE = 32


def _pixel_estimator(frames: torch.Tensor) -> np.ndarray:
    """Test stand-in for the 3DMM fit: the 13 features are written into the first pixel row of channel 0."""
    return frames[:, 0, 0, :N_FEATURES].double().numpy() * 10.0


def _make(seed: int = 0) -> AnimeCeleb:
    torch.manual_seed(seed)
    cfg = load_profile("animeceleb", "tiny", {"size": SIZE, "channels": 8, "max_channels": 16, "num_down": 2,
                                              "descriptor_dim": 16, "mapping_hidden": 16, "pose_fit_every": 1})
    return AnimeCeleb(cfg, pose_estimator=_pixel_estimator)


def _frames_with_features(feats: np.ndarray, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(len(feats), 3, SIZE, SIZE, generator=g)
    frames[:, 0, 0, :N_FEATURES] = torch.as_tensor(feats / 10.0, dtype=torch.float32)
    return frames


def test_registered_and_needs_pairs() -> None:
    assert METHODS.get("animeceleb").factory is AnimeCeleb
    assert AnimeCeleb.capabilities.needs_paired_pose and AnimeCeleb.capabilities.cross_domain


def test_pose_map_recovers_a_known_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, N_FEATURES)) * np.r_[20.0, 10.0, 5.0, np.full(10, 3e3)]  # degrees + raw 3DMM scale
    w = rng.normal(size=(N_FEATURES, 20)) / np.abs(x).mean(0)[:, None]
    b = rng.normal(size=20)
    y = x @ w + b
    y[:, :17] = y[:, :17] * 0.01 + 0.5  # keep the morphs inside [0, 1] so clipping does not interfere
    w[:, :17] *= 0.01
    b[:17] = b[:17] * 0.01 + 0.5
    x_nan = x.copy()
    x_nan[::7] = np.nan  # frames without a face are skipped
    pmap = PoseVectorMap(ridge=1e-9)
    assert pmap.update(x_nan[:150], y[:150]) + pmap.update(x_nan[150:], y[150:]) == 400 - len(x[::7])
    w_hat, b_hat = pmap.solve()
    assert np.allclose(w_hat.numpy(), w, atol=1e-6 * np.abs(w).max())
    assert np.allclose(b_hat.numpy(), b, atol=1e-6)
    assert torch.allclose(pmap(x[:5]), torch.as_tensor(y[:5], dtype=torch.float32), atol=1e-4)
    noisy = PoseVectorMap(ridge=1e-3)
    noisy.update(x, y + rng.normal(scale=0.01, size=y.shape))
    assert np.abs(noisy.solve()[0].numpy() - w).max() < 0.05 * np.abs(w).max()


def test_fill_missing() -> None:
    nan = float("nan")
    p = torch.tensor([[nan, nan], [1.0, 2.0], [nan, 0.0], [3.0, 4.0], [nan, nan]])
    expected = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [3.0, 4.0], [3.0, 4.0]])
    assert torch.equal(fill_missing(p, torch.zeros(2)), expected)
    assert torch.equal(fill_missing(torch.full((2, 2), nan), torch.tensor([5.0, 6.0])), torch.full((2, 2), 5.0)
                       .index_put_((torch.tensor([0, 1]), torch.tensor([1, 1])), torch.tensor(6.0)))


def _fit_exact_maps(model: AnimeCeleb, w: np.ndarray, b: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(200, N_FEATURES))
    for pmap in model.pose_maps.values():
        pmap.ridge = 1e-9
        pmap.update(x, x @ w + b)


def test_relative_driving_adds_the_driving_change_to_the_source_pose(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _make()
    rng = np.random.default_rng(2)
    w = rng.normal(scale=0.02, size=(N_FEATURES, 20))
    w[:, 17:] *= 500  # angles in degrees
    b = np.r_[np.full(17, 0.5), np.zeros(3)]
    _fit_exact_maps(model, w, b)
    feats_src = rng.uniform(-1, 1, size=(1, N_FEATURES))
    feats_drv = rng.uniform(-1, 1, size=(4, N_FEATURES))
    pose_src, pose_drv = feats_src @ w + b, feats_drv @ w + b
    expected = pose_src + (pose_drv - pose_drv[:1])
    seen = {}

    def spy(source, pose_source, pose_target, domain):  # noqa: ANN001, ANN202
        seen.update(pose_source=pose_source, pose_target=pose_target, domain=domain)
        return torch.zeros(len(pose_target), 3, SIZE, SIZE)

    monkeypatch.setattr(model, "animate_poses", spy)
    src = _frames_with_features(feats_src)[0]
    drv = _frames_with_features(feats_drv, seed=1)
    model.animate(src, drv, source_domain="cartoon", driving_domain="real")
    assert seen["domain"] == "cartoon"
    assert np.allclose(seen["pose_source"].numpy(), pose_src[0], atol=1e-3)
    assert np.allclose(seen["pose_target"].numpy(), expected, atol=1e-3)
    model.animate(src, drv, source_domain="real", driving_domain="real", relative=False)
    assert np.allclose(seen["pose_target"].numpy(), pose_drv, atol=1e-3)


def test_animate_with_source_as_driving_keeps_the_source_pose() -> None:
    model = _make()
    rng = np.random.default_rng(3)
    w = rng.normal(scale=0.02, size=(N_FEATURES, 20))
    _fit_exact_maps(model, w, np.r_[np.full(17, 0.5), np.zeros(3)])
    src = _frames_with_features(rng.uniform(-1, 1, size=(1, N_FEATURES)))[0]
    out = model.animate(src, src[None].repeat(3, 1, 1, 1), source_domain="real", driving_domain="real")
    assert out.shape == (3, 3, SIZE, SIZE) and 0 <= out.min() and out.max() <= 1
    assert torch.allclose(out[0], out[2], atol=1e-6)


def test_animate_without_a_fitted_map_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no fitted 3DMM"):
        _make().animate(torch.rand(3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE), source_domain="real",
                        driving_domain="cartoon")


def _batch(n: int = 4, seed: int = 0, true: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """Discs whose horizontal position is the pose vector's yaw: a learnable pose -> image relation."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    out = {}
    for dom in ("real", "cartoon"):
        poses = {}
        frames = {}
        for key in ("source", "driving"):
            yaw = torch.rand(n, generator=g) * 40 - 20
            pose = torch.full((n, 20), 0.5)
            pose[:, 17:] = 0
            pose[:, 17] = yaw
            disc = (((xx[None] - yaw[:, None, None] / 40) ** 2 + yy[None] ** 2) < 0.2).float()
            frames[key] = torch.stack([disc, disc * 0.5, 0.3 + 0 * disc], 1)
            frames[key][:, 0, 0, :N_FEATURES] = (yaw[:, None] / 40).expand(n, N_FEATURES)
            poses[key] = pose
        out[dom] = {"source": frames["source"], "driving": frames["driving"], "motion_source": poses["source"],
                    "motion_driving": poses["driving"], "motion_is_true": torch.full((n,), true)}
    return out


def test_training_learns_and_records_label_kind() -> None:
    model = _make()
    batch = _batch()
    first = model.training_step(batch, 0)
    for step in range(1, 20):
        logs = model.training_step(batch, step)
    assert logs["loss"] < 0.8 * first["loss"]  # measured 0.67x after 20 steps
    assert model.cfg["pose_labels"] == "true" and int(model.label_counts[1]) == 0
    assert all(p.fitted for p in model.pose_maps.values())
    pseudo = _batch(true=False)
    pseudo["real"]["motion_driving"][0] = float("nan")  # unknown pose: the sample is dropped
    model.training_step(pseudo, 30)
    assert model.cfg["pose_labels"] == "mixed"
    assert int(model.label_counts[1]) == 2 * 4 - 1


def test_batch_without_pose_vectors_is_a_user_error() -> None:
    batch = _batch()
    for b in batch.values():
        b["motion_source"][:] = float("nan")
    with pytest.raises(UserError, match="without any pose vector"):
        _make().training_step(batch, 0)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _make()
    for step in range(3):
        model.training_step(_batch(n=6, seed=step), step)  # 18 pairs per domain: enough to fit the pose maps
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, 3)
    fresh = _make(seed=7)
    assert load_checkpoint(fresh, path, optimizer=True) == 3
    assert torch.equal(fresh.label_counts, model.label_counts)
    assert fresh.cfg["pose_labels"] == "true"
    src = _batch(seed=9)["real"]["source"]
    a = model.animate(src[0], src, source_domain="real", driving_domain="cartoon")
    b = fresh.animate(src[0], src, source_domain="real", driving_domain="cartoon")
    assert torch.equal(a, b)
