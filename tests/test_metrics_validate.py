"""Validation statistics against independent formulas, and the report on a tiny demo corpus (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.eval import validate as V


def test_roc_auc_counts_ordered_pairs() -> None:
    pos, neg = np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.3, 0.4])
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert V.roc_auc(pos, neg) == pytest.approx(wins / 9)


def test_pearson_and_ridge_probe_recover_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    w = rng.normal(size=(4, 2))
    y = x @ w + 0.5
    pred = V.ridge_probe(x[:150], y[:150], x[150:], lam=1e-9)
    np.testing.assert_allclose(pred, y[150:], atol=1e-6)
    assert V.pearson(pred[:, 0], y[150:, 0]) == pytest.approx(np.corrcoef(pred[:, 0], y[150:, 0])[0, 1])


def test_split_is_identity_disjoint_and_stable() -> None:
    ids = [f"cartoon_{i:02d}" for i in range(24)]
    splits = [V._split_of(i) for i in ids]
    assert splits == [V._split_of(i) for i in ids]
    assert 0 < splits.count("test") < len(ids)
