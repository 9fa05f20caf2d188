"""The demo corpus is the same bytes on every x86-64 CPU: a real-head and a cartoon video, rendered with OpenBLAS
forced to another kernel family and with NumPy's AVX-512 code switched off, equal the default build's bytes.

What used to differ (and what :mod:`toontalker_bench.core.exact` now does instead): BLAS matrix products and LAPACK
fits in the real-head geometry, and NumPy's SIMD ``sin``/``exp``/``power`` in the motion curves and landmarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).with_name("helpers_synth_bytes.py")
SETTINGS = {
    "default": {},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "openblas-sandybridge": {"OPENBLAS_CORETYPE": "SandyBridge"},
    "numpy-no-avx512": {"NPY_DISABLE_CPU_FEATURES": "AVX512_ICL AVX512_SPR X86_V4"},
}


def _render(tmp_path: Path, name: str, env: dict[str, str]) -> dict:
    # "default" is the environment as it is (it may already pin OPENBLAS_CORETYPE); the others change one setting
    out = subprocess.run([sys.executable, str(HELPER), str(tmp_path / name)], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_synth_bytes_do_not_depend_on_the_cpu_kernels(tmp_path: Path) -> None:
    got = {name: _render(tmp_path, name, env) for name, env in SETTINGS.items()}
    base = got["default"]["files"]
    assert sorted(base) == ["cartoon_t.gt.parquet", "cartoon_t.mp4", "real_t.gt.parquet", "real_t.mp4"]
    for name, res in got.items():
        assert res["files"] == base, f"{name}: {sorted(k for k in base if res['files'].get(k) != base[k])} differ"
        assert not res["torch_imported"]  # so torch's own CPU dispatch (ATEN_CPU_CAPABILITY) cannot reach the corpus
