"""FOMM: official names/shapes, release loading, dense-motion identity, equivariance, relative motion, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers_fomm_official import seeded_frames, seeded_state
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from toontalker_bench.core.errors import CheckpointError
from toontalker_bench.models.base import METHODS
from toontalker_bench.models.fomm.dense_motion import DenseMotionNetwork
from toontalker_bench.models.fomm.keypoint_detector import KPDetector
from toontalker_bench.models.fomm.model import FOMM, RandomTPS, equivariance_losses, normalize_kp

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests/fixtures/fomm_vox_keys.json").read_text())
OFFICIAL = ROOT / "tests/fixtures/fomm_official_outputs.safetensors"
PROFILES = yaml.safe_load((ROOT / "toontalker_bench/models/profiles/fomm.yaml").read_text())


def _identity_grid(b: int, h: int, w: int) -> torch.Tensor:
    theta = torch.eye(2, 3).expand(b, 2, 3)
    return F.affine_grid(theta, [b, 1, h, w], align_corners=True)


@pytest.fixture(scope="module")
def paper() -> FOMM:
    torch.manual_seed(0)
    return FOMM(PROFILES["paper"])


@pytest.fixture()
def tiny() -> FOMM:
    torch.manual_seed(0)
    return FOMM(PROFILES["tiny"])


def test_registered() -> None:
    assert METHODS.get("fomm").factory is FOMM


def test_paper_names_and_shapes_equal_the_official_release(paper: FOMM) -> None:
    for key in ("generator", "kp_detector"):
        ours = {k: list(v.shape) for k, v in getattr(paper, key).state_dict().items()}
        assert ours == FIXTURE[key], key


def _fake_release(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    ckpt = {k: {n: (torch.tensor(7) if not s else torch.randn(s, generator=g)) for n, s in FIXTURE[k].items()}
            for k in ("generator", "kp_detector")}
    ckpt["discriminator"] = {"down_blocks.0.conv.weight": torch.zeros(2)}
    ckpt["epoch"] = 99
    return ckpt


def test_load_release_checkpoint_copies_every_tensor(paper: FOMM, tmp_path: Path) -> None:
    ckpt = _fake_release()
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save(ckpt, path)
    notes = paper.load_release_checkpoint(str(path))
    assert any(n.startswith("discriminator:") for n in notes) and any(n.startswith("epoch:") for n in notes)
    for key in ("generator", "kp_detector"):
        state = getattr(paper, key).state_dict()
        for name, value in ckpt[key].items():
            assert torch.equal(state[name], value), name


def test_load_release_checkpoint_rejects_wrong_shape_and_missing(paper: FOMM, tmp_path: Path) -> None:
    ckpt = _fake_release()
    ckpt["kp_detector"]["kp.weight"] = torch.zeros(12, 35, 7, 7)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"kp\.weight \(12, 35, 7, 7\)"):
        paper.load_release_checkpoint(str(tmp_path / "bad.pth"))
    ckpt = _fake_release()
    del ckpt["generator"]["final.bias"]
    torch.save(ckpt, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing: final.bias"):
        paper.load_release_checkpoint(str(tmp_path / "missing.pth"))
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a FOMM release"):
        paper.load_release_checkpoint(str(tmp_path / "other.pth"))


class _Opaque:  # a pickled object outside the weights-only allow-list
    pass


def test_untrusted_pickle_needs_trust(tiny: FOMM, tmp_path: Path) -> None:
    path = tmp_path / "pickle.pth"
    torch.save({"generator": {}, "kp_detector": {}, "extra": _Opaque()}, path)
    with pytest.raises(CheckpointError, match="trust-checkpoint"):
        tiny.load_release_checkpoint(str(path))
    with pytest.raises(CheckpointError, match="missing"):  # trusted: it unpickles, then the names are checked
        tiny.load_release_checkpoint(str(path), trust=True)


def test_dense_motion_is_identity_when_source_equals_driving() -> None:
    torch.manual_seed(0)
    kp_net = KPDetector(16, 5, 3, 64, 3, 0.1, True, 0.5, pad=3)
    dense = DenseMotionNetwork(16, 3, 64, 5, 3, True, 0.5)
    image = torch.rand(2, 3, 64, 64)
    kp = kp_net(image)
    out = dense(image, kp_driving=kp, kp_source=kp)
    assert torch.allclose(out["deformation"], _identity_grid(2, 32, 32), atol=1e-5)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 32, 32), atol=1e-5)


def test_sparse_motion_of_a_pure_translation() -> None:
    dense = DenseMotionNetwork(8, 2, 32, 3, 3, False, 1.0)
    src = torch.tensor([[[0.1, -0.2], [0.3, 0.4], [-0.5, 0.0]]])
    shift = torch.tensor([0.2, -0.1])
    eye = torch.eye(2).expand(1, 3, 2, 2)
    motions = dense.sparse_motions(8, 8, {"value": src + shift, "jacobian": eye}, {"value": src, "jacobian": eye})
    grid = _identity_grid(1, 8, 8)
    assert torch.allclose(motions[:, 0], grid, atol=1e-6)  # background stays put
    for k in range(3):  # driving pixel z samples the source at z - shift
        assert torch.allclose(motions[:, k + 1], grid - shift, atol=1e-6)


def test_tps_jacobian_matches_autograd() -> None:
    torch.manual_seed(0)
    tps = RandomTPS(3, sigma_affine=0.1, sigma_tps=0.05, points_tps=5, like=torch.zeros(1))
    pts = (torch.rand(3, 7, 2) * 1.6 - 0.8).requires_grad_(True)
    warped = tps.warp_coordinates(pts)
    rows = [torch.autograd.grad(warped[..., i].sum(), pts, retain_graph=True)[0] for i in range(2)]
    assert torch.allclose(tps.jacobian(pts.detach()), torch.stack(rows, dim=-2), atol=1e-4)


class _BlobDetector(torch.nn.Module):
    """Keypoint k = intensity centroid of channel k: equivariant to smooth warps by construction of the image."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, c, h, w = x.shape
        grid = _identity_grid(1, h, w).reshape(h * w, 2)
        weights = x.reshape(b, c, h * w)
        value = (weights @ grid) / weights.sum(-1, keepdim=True)
        return {"value": value, "jacobian": torch.eye(2).expand(b, c, 2, 2)}


class _FixedDetector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"value": torch.zeros(x.shape[0], 3, 2), "jacobian": torch.eye(2).expand(x.shape[0], 3, 2, 2)}


def test_equivariance_loss_vanishes_for_an_equivariant_detector() -> None:
    torch.manual_seed(0)
    centres = torch.tensor([[-0.3, -0.2], [0.25, 0.1], [0.0, 0.35]])
    grid = _identity_grid(1, 96, 96)[0]
    blobs = torch.exp(-((grid[None] - centres[:, None, None]) ** 2).sum(-1) / (2 * 0.04**2))
    image = blobs[None].repeat(2, 1, 1, 1)
    tps = RandomTPS(2, sigma_affine=0.08, sigma_tps=0.01, points_tps=5, like=image)
    equivariant = _BlobDetector()
    kp = equivariant(image)
    assert torch.allclose(kp["value"][0], centres, atol=2e-3)
    good = equivariance_losses(equivariant, kp, image, tps)["equivariance_value"]
    bad = equivariance_losses(_FixedDetector(), _FixedDetector()(image), image, tps)["equivariance_value"]
    assert good < 3e-3  # measured 8e-4 (bilinear resampling of the warped blobs); fixed detector 0.066
    assert bad > 10 * good


def test_normalize_kp_is_source_when_driving_is_initial() -> None:
    torch.manual_seed(0)
    src = {"value": torch.rand(1, 4, 2), "jacobian": torch.rand(1, 4, 2, 2) + torch.eye(2)}
    drv = {"value": torch.rand(1, 4, 2), "jacobian": torch.rand(1, 4, 2, 2) + torch.eye(2)}
    same = normalize_kp(src, drv, drv)
    assert torch.allclose(same["value"], src["value"]) and torch.allclose(same["jacobian"], src["jacobian"], atol=1e-5)
    moved = {"value": drv["value"] + 0.1, "jacobian": drv["jacobian"]}
    assert torch.allclose(normalize_kp(src, moved, drv)["value"], src["value"] + 0.1)


def _batch(size: int, n: int = 4, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")

    def disc(shift: torch.Tensor) -> torch.Tensor:
        r = (xx[None] - shift[:, None, None]) ** 2 + yy[None] ** 2
        return torch.stack([(r < 0.25).float(), 0.5 * (r < 0.25).float(), 0.2 + 0 * r], 1)

    out = {}
    for dom in ("real", "cartoon"):
        s, d = torch.rand(n, generator=g) * 0.6 - 0.3, torch.rand(n, generator=g) * 0.6 - 0.3
        out[dom] = {"source": disc(s), "driving": disc(d)}
    return out


def test_training_reduces_reconstruction_loss(tiny: FOMM) -> None:
    batch = _batch(tiny.size)
    first = tiny.training_step(batch, 0)
    assert tiny.cfg["reconstruction_backend"].startswith(("vgg19", "multiscale-l1"))
    for step in range(1, 25):
        logs = tiny.training_step(batch, step)
    assert set(first) >= {"loss", "reconstruction", "equivariance_value", "equivariance_jacobian"}
    assert logs["reconstruction"] < 0.8 * first["reconstruction"]  # measured 0.35-0.5x after 25 steps


def test_checkpoint_round_trip_and_animate(tiny: FOMM, tmp_path: Path) -> None:
    tiny.training_step(_batch(tiny.size), 0)
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, tmp_path / "w.safetensors")
    torch.manual_seed(123)
    fresh = FOMM(PROFILES["tiny"])
    fresh.load_state_dict(load_file(tmp_path / "w.safetensors"))
    fresh.load_optimizer_state(tiny.optimizer_state())
    frames = _batch(tiny.size, n=5, seed=3)["real"]["driving"]
    a = tiny.animate(frames[0], frames, source_domain="real", driving_domain="cartoon")
    b = fresh.animate(frames[0], frames, source_domain="real", driving_domain="cartoon")
    assert a.shape == (5, 3, tiny.size, tiny.size) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------ align_corners
def _tiny(align_corners: bool | None) -> FOMM:
    cfg = {**PROFILES["tiny"], "loss": {**PROFILES["tiny"]["loss"], "reconstruction": "l1_ssim"}}
    if align_corners is None:
        del cfg["align_corners"]
    else:
        cfg["align_corners"] = align_corners
    torch.manual_seed(0)
    return FOMM(cfg)


def test_align_corners_profiles_and_default() -> None:
    assert PROFILES["paper"]["align_corners"] is True and PROFILES["tiny"]["align_corners"] is True
    model = _tiny(None)  # a run config written before the key existed
    assert model.align_corners is True and model.cfg["align_corners"] is True


@pytest.mark.parametrize("align", [True, False])
def test_matches_official_modules_in_both_modes(align: bool) -> None:
    """The official FOMM modules (commit c027484, outside the repository), on the tiny profile's sizes, with the
    weights of ``helpers_fomm_official.seeded_state`` (loaded by name) and ``seeded_frames(3, 64)`` (frame 0 the
    source, 1-2 the driving frames): keypoints of the three frames, then the generator's prediction and occlusion map
    for the source driven by frames 1-2 (absolute keypoints), with ``F.grid_sample`` defaulting to
    ``align_corners=True`` (PyTorch <= 1.2, ``align_true.*``) and to ``False`` (the official code on current PyTorch,
    ``align_false.*``). Measured: ours 6e-8 from the same mode, 3.2e-4 from the other."""
    with safe_open(str(OFFICIAL), "pt") as f:
        ref = {k: f.get_tensor(k) for k in f.keys()}
    model = _tiny(align).eval()
    model.kp_detector.load_state_dict(seeded_state(model.kp_detector))
    model.generator.load_state_dict(seeded_state(model.generator))
    frames = seeded_frames(3, 64)
    with torch.no_grad():
        kp = model.kp_detector(frames)
        kp_drv = {k: v[1:] for k, v in kp.items()}
        kp_src = {k: v[:1].expand(2, *v.shape[1:]) for k, v in kp.items()}
        out = model.generator(frames[:1].expand(2, -1, -1, -1), kp_driving=kp_drv, kp_source=kp_src)
    assert (kp["value"] - ref["kp.value"]).abs().max() < 1e-5
    assert (kp["jacobian"] - ref["kp.jacobian"]).abs().max() < 1e-5
    same, other = ("align_true", "align_false") if align else ("align_false", "align_true")
    assert (out["prediction"] - ref[f"{same}.prediction"]).abs().max() < 1e-5
    assert (out["occlusion_map"] - ref[f"{same}.occlusion_map"]).abs().max() < 1e-5
    assert (out["prediction"] - ref[f"{other}.prediction"]).abs().max() > 1e-4


@pytest.mark.parametrize("align", [True, False])
def test_align_corners_reaches_every_grid_sample(align: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training (dense motion, feature warp, TPS equivariance) and animation sample with the configured flag;
    bilinear resizes never align corners (the official ``F.interpolate`` default)."""
    seen: dict[str, list] = {"grid_sample": [], "resize": []}
    grid_sample, interpolate = F.grid_sample, F.interpolate

    def spy_grid(*args, **kw):
        seen["grid_sample"].append((kw.get("padding_mode"), kw.get("align_corners")))
        return grid_sample(*args, **kw)

    def spy_resize(*args, **kw):
        if kw.get("mode") == "bilinear":
            seen["resize"].append(kw.get("align_corners"))
        return interpolate(*args, **kw)

    model = _tiny(align)  # 64 px: dense motion at 32 px, features at 16 px, so the flow is resized
    monkeypatch.setattr(F, "grid_sample", spy_grid)
    monkeypatch.setattr(F, "interpolate", spy_resize)
    model.training_step(_batch(model.size, n=2), 0)
    frames = _batch(model.size, n=3, seed=1)["real"]["driving"]
    model.animate(frames[0], frames, source_domain="real", driving_domain="real")
    assert {a for _, a in seen["grid_sample"]} == {align}
    assert {"zeros", "reflection"} <= {p for p, _ in seen["grid_sample"]}  # warps and the TPS transform
    assert seen["resize"] and set(seen["resize"]) == {False}


def test_bfloat16_autocast_step_and_animate(tiny: FOMM) -> None:
    """The trainer steps under bfloat16 autocast on CUDA; the keypoint Jacobians' inverse has no bf16 kernel."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = tiny.training_step(_batch(tiny.size, n=1), 0)
        frames = _batch(tiny.size, n=2)["real"]["driving"]
        out = tiny.animate(frames[0], frames, source_domain="real", driving_domain="real")
    assert torch.isfinite(torch.tensor(logs["loss"])) and out.shape == (2, 3, tiny.size, tiny.size)
