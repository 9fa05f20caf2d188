"""Checkpoints: safetensors holding the method's weights (``model.*``), optional optimiser tensors (``optim.*``) and
JSON metadata (method, step, config, the optimiser state's non-tensor structure).

Third-party ``.pth`` files go through :func:`load_torch_file`: ``torch.load(weights_only=True)``, full pickles only when
the user passes ``--trust-checkpoint``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..core.errors import CheckpointError
from ..core.io import atomic_path
from .base import Method

FORMAT = "toontalker-bench/1"
MAX_LISTED = 6


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Nested state -> JSON tree with tensors replaced by ``{"__tensor__": key}`` (dict key types preserved)."""
    if isinstance(obj, torch.Tensor):
        key = f"optim.{prefix}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__dict__" in tree:
            return {k: _unflatten(v, tensors) for k, v in tree["__dict__"]}
        if "__tuple__" in tree:
            return tuple(_unflatten(v, tensors) for v in tree["__tuple__"])
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree


def save_checkpoint(path: str | Path, method: Method, step: int, with_optimizer: bool = True,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``method``'s weights (and optimiser state) atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in method.state_dict().items()}
    meta = {"format": FORMAT, "method": method.name, "step": str(int(step)),
            "config": json.dumps(method.cfg, sort_keys=True, default=str)}
    if with_optimizer:
        meta["optim_tree"] = json.dumps(_flatten(method.optimizer_state(), "", tensors))
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}", hint="the file is not a complete safetensors file")
    return tensors, meta


def saved_config(path: str | Path, method: str) -> dict[str, Any] | None:
    """The method config saved in a toontalker-bench checkpoint of ``method`` (None for other files)."""
    if Path(path).suffix != ".safetensors":
        return None
    meta = read_checkpoint(path)[1]
    return json.loads(meta["config"]) if "config" in meta and meta.get("method") == method else None


def load_checkpoint(method: Method, path: str | Path, *, optimizer: bool = False, trust: bool = False) -> int:
    """Load weights into ``method`` with strict name/shape checks; returns the checkpoint's step.

    ``.safetensors`` files must come from the same method; other suffixes go to the method's release loader.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        method.load_release_checkpoint(str(path), trust=trust)
        return 0
    tensors, meta = read_checkpoint(path)
    saved_by = meta.get("method")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a toontalker-bench checkpoint (no {FORMAT!r} metadata)",
                              hint="release checkpoints (.pth) load through the method's own loader")
    if saved_by != method.name:
        raise CheckpointError(f"checkpoint {path} was saved by method {saved_by!r}, not {method.name!r}",
                              hint=f"use --method {saved_by} or a checkpoint of {method.name}")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(method, model, str(path))
    method.load_state_dict(model, strict=True)
    if optimizer and "optim_tree" in meta:
        method.load_optimizer_state(_unflatten(json.loads(meta["optim_tree"]), tensors))
    return int(meta.get("step", 0))


def check_state(method: Method, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError naming the keys that are missing, unexpected or of another shape."""
    own = method.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{label}: {', '.join(items[:MAX_LISTED])}{more}")
    if problems:
        raise CheckpointError(f"checkpoint {where} does not fit {method.name} with this profile — "
                              + "; ".join(problems), hint="use the profile and --set values it was trained with")


def load_torch_file(path: str | Path, trust: bool = False) -> Any:
    """``torch.load`` for third-party files: tensors-only unpickling unless ``trust`` is set.

    Safe loading (``weights_only=True``) accepts tensors, dicts (also ``OrderedDict``), lists, tuples, sets, numbers,
    strings, bytes, ``None``, ``torch.Size`` / ``dtype`` / ``device`` and optimiser state dicts; it refuses any other
    pickled object (an ``argparse.Namespace`` of training arguments, numpy arrays or scalars, ``pathlib`` paths,
    ``datetime``, whole ``nn.Module`` objects...), which then needs ``trust`` (``--trust-checkpoint``).
    """
    import pickle
    import re

    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"a pickled Python object ({found.group(1)})" if found else "pickled Python objects"
        raise CheckpointError(f"{path} holds {what}, refused by safe loading (weights_only=True); pass "
                              "--trust-checkpoint if you trust the file (unpickling it can run code from it)") from None
    except (OSError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"cannot read {path}: {str(e).strip().splitlines()[0][:200]}") from None
