"""FID/KID: equality with pytorch-fid's own code path on the same weights, closed forms, the feature cache."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from toontalker_bench.metrics import fid as F


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory):
    from skimage import data

    root = tmp_path_factory.mktemp("fid")
    rng = np.random.default_rng(0)
    img = data.astronaut()
    for name, noise in (("a", 4.0), ("b", 30.0)):
        (root / name).mkdir()
        for i in range(8):
            y, x = rng.integers(0, 380, 2)
            crop = img[y:y + 128, x:x + 128].astype(np.float64) + rng.normal(0, noise, (128, 128, 3))
            Image.fromarray(crop.clip(0, 255).astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def extractor(tmp_path_factory: pytest.TempPathFactory) -> F.InceptionExtractor:
    return F.InceptionExtractor("cpu", batch_size=10, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_fid_equals_pytorch_fid_code_path(folders, extractor: F.InceptionExtractor) -> None:
    """``python -m pytorch_fid A B`` runs ``calculate_fid_given_paths``: build its ``InceptionV3`` with the same weights
    file, then its per-folder statistics (PIL -> ToTensor -> in-model resize) and its Frechet distance."""
    from pytorch_fid import fid_score
    from pytorch_fid import inception as pfi
    from safetensors.torch import load_file

    from toontalker_bench.assets import require

    p = require("fid-inception")
    state = load_file(str(p)) if p.suffix == ".safetensors" else torch.load(p, weights_only=True)
    state.setdefault("fc.weight", torch.zeros(1008, 2048))  # pytorch-fid's strict load wants the unused logits
    state.setdefault("fc.bias", torch.zeros(1008))
    a, b = str(folders / "a"), str(folders / "b")
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *args, **kw: state):
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    their_feats = fid_score.get_activations(sorted((folders / "a").glob("*.png")), model, 10, 2048, "cpu", 0)
    stats = [fid_score.compute_statistics_of_path(p, model, 10, 2048, "cpu", 0) for p in (a, b)]
    theirs = fid_score.calculate_frechet_distance(*stats[0], *stats[1])
    ours = F.fid_from_features(extractor.features_of_path(a), extractor.features_of_path(b))
    assert abs(ours - theirs) < 1e-3, (ours, theirs)
    assert theirs > 1.0  # two different sets: the comparison is not between zeros
    assert np.abs(extractor.features_of_path(a) - their_feats).max() < 1e-4


def test_frechet_distance_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    assert F.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_kid_is_the_unbiased_polynomial_mmd() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1, size=(12, 5))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 5 + 1) ** 3

    m = 12
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = F.kid_from_features(x, y, subsets=3, subset_size=12)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)  # every subset is the whole set


def test_feature_cache_is_keyed_by_content(extractor: F.InceptionExtractor, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    first = extractor.features(frames)
    assert len(list(extractor.cache_root.glob(f"*-{extractor.weights_sha[:16]}.npy"))) >= 1

    def boom(batch: np.ndarray) -> np.ndarray:
        raise AssertionError("network called although the features are cached")

    monkeypatch.setattr(extractor, "_forward", boom)
    np.testing.assert_array_equal(extractor.features(frames.copy()), first)
    changed = frames.copy()
    changed[0, 0, 0, 0] ^= 1
    with pytest.raises(AssertionError, match="network called"):
        extractor.features(changed)


def test_distribution_metric_needs_enough_frames() -> None:
    from toontalker_bench.metrics import METRICS, Pair

    rng = np.random.default_rng(4)
    fr = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    m = METRICS.create("fid", min_frames=64)
    m.update(Pair(fr, fr))
    assert m.compute().value is None and "no reference set" in m.compute().reason
    m.set_reference(fr)
    v = m.compute()
    assert v.value is None and "at least 64 frames" in v.reason
