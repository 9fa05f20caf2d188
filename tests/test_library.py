"""The library face (`import toontalker_bench as tb`): cheap to import, every advertised name resolves to the object
its module defines, and a real call goes through it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import toontalker_bench as tb

FACE = {  # name -> where it is defined, spelled out here so a renamed or moved entry point fails this test
    "load_params": "toontalker_bench.core.config",
    "clip_table": "toontalker_bench.data.dataset",
    "load_pairs": "toontalker_bench.data.dataset",
    "load_clips": "toontalker_bench.data.dataset",
    "METHODS": "toontalker_bench.models.base",
    "build_method": "toontalker_bench.models.registry",
    "load_method": "toontalker_bench.animate",
    "animate_files": "toontalker_bench.animate",
    "METRICS": "toontalker_bench.metrics.base",
    "Evaluator": "toontalker_bench.eval.evaluator",
    "evaluate_paths": "toontalker_bench.eval.evaluator",
}


def test_importing_the_package_loads_no_heavy_module() -> None:
    code = ("import sys, toontalker_bench as tb; tb.__all__; dir(tb); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas', 'numpy', 'cv2') "
            "or m.startswith('toontalker_bench.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_name_resolves_to_its_module_object() -> None:
    assert set(tb.__all__) == {"__version__", *FACE}
    assert set(FACE) <= set(dir(tb))
    for name, module in FACE.items():
        assert getattr(tb, name) is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tb.nope  # noqa: B018


def test_registries_and_a_pixel_metric_through_the_face() -> None:
    assert {"toontalker", "fomm", "animeceleb"} <= set(tb.METHODS.names())
    assert {"l1", "psnr"} <= set(tb.METRICS.names())
    rng = np.random.default_rng(0)
    drv = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    gen = np.clip(drv.astype(np.int16) + rng.integers(-20, 21, drv.shape), 0, 255).astype(np.uint8)
    ev = tb.Evaluator(["l1", "psnr"], device="cpu", cache=False)
    ev.evaluate_pair(ev.pair(gen, drv))
    out = ev.compute()
    diff = (gen.astype(np.float64) - drv.astype(np.float64)) / 255.0
    assert out["l1"].value == pytest.approx(np.abs(diff).mean())
    psnr = np.mean([10 * np.log10(1.0 / (d ** 2).mean()) for d in diff])
    assert out["psnr"].value == pytest.approx(psnr)
