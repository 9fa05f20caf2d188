"""toontalker-bench: dataset construction and benchmark harness for cross-domain face reenactment.

The library face: ``import toontalker_bench as tb`` gives the calls a notebook needs, each imported on first use
(PEP 562), so importing the package itself loads no torch, no pandas, no model code:

- a built dataset: ``tb.clip_table(dir)``, ``tb.load_pairs(dir, tasks)``, ``tb.load_clips(dir, split)``;
- methods: ``tb.METHODS`` (the registry), ``tb.build_method(name, profile, checkpoint=...)``, or
  ``tb.load_method(params, name, checkpoint, profile)`` as ``animate`` does (refuses methods that cannot animate);
- metrics: ``tb.METRICS`` (the registry), ``tb.evaluate_paths(generated, driving, ...)`` on folders / videos,
  ``tb.Evaluator(names)`` on frame arrays;
- ``tb.animate_files(params, method, source, driving, out)``; ``tb.load_params()`` reads ``params.yaml``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_FACE: dict[str, str] = {  # name -> the module (below this package) that defines it
    "load_params": "core.config",
    "clip_table": "data.dataset",
    "load_pairs": "data.dataset",
    "load_clips": "data.dataset",
    "METHODS": "models.base",
    "build_method": "models.registry",
    "load_method": "animate",
    "animate_files": "animate",
    "METRICS": "metrics",
    "Evaluator": "eval.evaluator",
    "evaluate_paths": "eval.evaluator",
}

__all__ = ["__version__", *_FACE]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the named module defines
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FACE})
