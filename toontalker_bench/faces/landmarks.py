"""Face landmarks inside given boxes: ``get_landmarker('dlib68' | 'dlib5').predict(frame_rgb, boxes)``.

``dlib68`` follows the iBUG 300-W 68-point convention (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth).
:func:`five_from_68` reduces it to the ArcFace/insightface 5 points.

``dlib5`` returns dlib's own 5 points, which are NOT the ArcFace 5 (it has no mouth corners): the outer and inner
corner of the image-right eye, the outer and inner corner of the image-left eye, then the base of the nose.
"""

from __future__ import annotations

import functools

import numpy as np

from ..assets import require
from ..core.errors import UserError

_MODELS = {"dlib68": ("dlib-landmarks68", 68), "dlib5": ("dlib-landmarks5", 5)}


class DlibLandmarker:
    """A dlib shape predictor; boxes ``(N, 4)`` x0, y0, x1, y1 (x1/y1 exclusive) -> points ``(N, K, 2)`` float32."""

    def __init__(self, name: str) -> None:
        import dlib

        asset, self.n_points = _MODELS[name]
        self.name = name
        self._dlib = dlib
        self.model = dlib.shape_predictor(str(require(asset, f"landmarks {name}")))

    def predict(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {frame_rgb.dtype} {frame_rgb.shape}")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        img = np.ascontiguousarray(frame_rgb)
        out = np.empty((len(boxes), self.n_points, 2), np.float32)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            rect = self._dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)  # dlib: inclusive
            shape = self.model(img, rect)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out


@functools.lru_cache(maxsize=None)
def get_landmarker(name: str) -> DlibLandmarker:
    """The landmark model ``name`` (``dlib68`` or ``dlib5``), loaded once per process."""
    if name not in _MODELS:
        raise UserError(f"unknown landmark model {name!r}", hint=f"known: {', '.join(sorted(_MODELS))}")
    return DlibLandmarker(name)


# 68-point indices (0-based): eye contours 36-41 (image-left eye) and 42-47, nose tip 30, mouth corners 48 and 54
_LEFT_EYE, _RIGHT_EYE, _NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = slice(36, 42), slice(42, 48), 30, 48, 54


def five_from_68(l68: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` -> ``(..., 5, 2)``: left eye centre, right eye centre, nose tip, left and right mouth corner
    (left/right in image terms; the ArcFace/insightface order)."""
    l68 = np.asarray(l68, dtype=np.float32)
    if l68.shape[-2:] != (68, 2):
        raise ValueError(f"expected (..., 68, 2) landmarks, got {l68.shape}")
    return np.stack([l68[..., _LEFT_EYE, :].mean(-2), l68[..., _RIGHT_EYE, :].mean(-2), l68[..., _NOSE_TIP, :],
                     l68[..., _MOUTH_LEFT, :], l68[..., _MOUTH_RIGHT, :]], axis=-2)
