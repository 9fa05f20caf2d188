"""Arithmetic whose result does not depend on the CPU: the same bytes on every x86-64 machine.

NumPy hands matrix products to BLAS and linear solves to LAPACK, whose kernels (picked per CPU, e.g. by
``OPENBLAS_CORETYPE``) sum in different orders and round differently; and it computes ``sin``/``exp``/... with SIMD
code that differs between AVX-512 and AVX2 machines in the last bit. Where such a last bit can reach a stored byte
(a rasterised edge, a ground-truth float) the demo corpus uses these instead:

- :func:`matmul`: a matrix product summed in a fixed order with plain multiplies and adds (IEEE-exact on every CPU);
- :func:`sin` / :func:`cos` / :func:`exp`: the C library's scalar functions, one element at a time;
- :func:`gaussian_filter1d`: SciPy's filter with a kernel from the C library's ``exp``;
- :func:`quantize`: rounds a value that came out of BLAS/LAPACK (a least-squares fit, a spline) to a stated step, so
  its last-bit noise is gone before anything downstream sees it.
"""

from __future__ import annotations

import math

import numpy as np

#: the step fitted geometry and ground truth are rounded to (pixels, degrees or model units): far below anything
#: visible, far above the last-bit noise of a fit (~1e-12)
STEP = 1e-6


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float64 (NumPy's shapes and broadcasting), summed over the inner axis in order, without BLAS."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.ndim == 1, b.ndim == 1
    a = a[None, :] if va else a
    b = b[:, None] if vb else b
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    out = a[..., :, 0, None] * b[..., None, 0, :]
    for k in range(1, a.shape[-1]):
        out = out + a[..., :, k, None] * b[..., None, k, :]
    return out[..., 0, :] if va else out[..., 0] if vb else out


_sin = np.frompyfunc(math.sin, 1, 1)
_cos = np.frompyfunc(math.cos, 1, 1)
_exp = np.frompyfunc(math.exp, 1, 1)


def sin(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(_sin(np.asarray(x, np.float64)), np.float64)


def cos(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(_cos(np.asarray(x, np.float64)), np.float64)


def exp(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(_exp(np.asarray(x, np.float64)), np.float64)


def quantize(x: np.ndarray | float, step: float = STEP) -> np.ndarray:
    """``x`` rounded to a multiple of ``step`` (float64)."""
    return np.round(np.asarray(x, np.float64) / step) * step


def gaussian_filter1d(x: np.ndarray, sigma: float, axis: int = -1, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter1d`` (order 0, mode ``reflect``) with its kernel computed by the C library's
    ``exp``: SciPy builds the kernel with NumPy's SIMD ``exp``, whose last bits differ between CPUs."""
    from scipy.ndimage import correlate1d

    radius = int(truncate * float(sigma) + 0.5)
    phi = np.array([math.exp(-0.5 / (sigma * sigma) * i * i) for i in range(-radius, radius + 1)])
    return correlate1d(np.asarray(x, np.float64), (phi / phi.sum())[::-1], axis=axis, mode="reflect")
