"""L1 / PSNR / SSIM / LPIPS: values against independent formulas, averaging per pair then over pairs."""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.metrics import METRICS, Pair


def _pair(gen: np.ndarray, drv: np.ndarray) -> Pair:
    return Pair(gen.astype(np.uint8), drv.astype(np.uint8))


def test_l1_is_mean_absolute_error_on_unit_range() -> None:
    gen = np.zeros((2, 8, 8, 3))
    drv = np.full((2, 8, 8, 3), 51)
    m = METRICS.create("l1")
    m.update(_pair(gen, drv))
    assert m.compute().value == pytest.approx(0.2)


def test_psnr_matches_skimage_and_averages_per_pair_then_over_pairs() -> None:
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(0)
    m = METRICS.create("psnr")
    per_pair = []
    for t, sd in ((2, 5.0), (6, 20.0)):
        drv = rng.integers(0, 256, (t, 16, 16, 3)).astype(np.uint8)
        gen = np.clip(drv + rng.normal(0, sd, drv.shape), 0, 255).astype(np.uint8)
        per_pair.append(np.mean([peak_signal_noise_ratio(d, g, data_range=255) for d, g in zip(drv, gen)]))
        m.update(_pair(gen, drv))
    v = m.compute()
    assert v.value == pytest.approx(np.mean(per_pair), rel=1e-9)
    assert v.n == 8 and v.extra["n_videos"] == 2


def test_ssim_is_one_for_identical_frames_and_falls_with_noise() -> None:
    rng = np.random.default_rng(1)
    drv = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    values = []
    for sd in (0.0, 10.0, 40.0):
        m = METRICS.create("ssim")
        m.update(_pair(np.clip(drv + rng.normal(0, sd, drv.shape), 0, 255), drv))
        values.append(m.compute().value)
    assert values[0] == pytest.approx(1.0)
    assert values[0] > values[1] > values[2]


def test_lpips_without_backbone_is_absent_with_reason(tmp_path, monkeypatch) -> None:
    from toontalker_bench.metrics import reconstruction

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the lpips-alex asset lives in the torch hub cache
    reconstruction.lpips_alex.cache_clear()
    m = METRICS.create("lpips")
    fr = np.zeros((1, 16, 16, 3), np.uint8)
    m.update(_pair(fr, fr))
    v = m.compute()
    reconstruction.lpips_alex.cache_clear()
    assert v.value is None and "lpips-alex" in v.reason and v.backend.startswith("lpips-alex")


def test_evaluator_aggregates_are_means_of_per_pair_values() -> None:
    from toontalker_bench.metrics.api import Evaluator

    rng = np.random.default_rng(2)
    ev = Evaluator(["l1", "ssim"], device="cpu")
    per_pair = []
    for t in (2, 5):
        drv = rng.integers(0, 256, (t, 16, 16, 3)).astype(np.uint8)
        gen = np.clip(drv + rng.normal(0, 10 * t, drv.shape), 0, 255).astype(np.uint8)
        per_pair.append(ev.evaluate_pair(ev.pair(gen, drv)))
    agg = ev.compute()
    for name in ("l1", "ssim"):
        assert agg[name].value == pytest.approx(np.mean([p[name].value for p in per_pair]))
        assert agg[name].n == 7 and agg[name].extra["n_videos"] == 2
