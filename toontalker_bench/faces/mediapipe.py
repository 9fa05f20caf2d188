"""MediaPipe's Face Landmarker as an instrument: blendshapes (52 ARKit-style coefficients), 478 landmarks and the
facial transformation matrix per frame, from a model nobody here trained (asset ``mediapipe-face-landmarker``).

The corpus check (:mod:`..data.corpus_check`) reads its blendshapes against the demo corpus's ground truth. Frames
are analysed one at a time (IMAGE mode), so a result never depends on the frame before it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..core.errors import MediaError

# ground-truth channel -> the blendshapes whose mean reads it (left/right averaged; MediaPipe names the sides from
# the subject's point of view, the ground truth from the image's, which the mean makes moot)
CHANNELS: dict[str, tuple[str, ...]] = {
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "mouth_open": ("jawOpen",),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
}


@dataclass(frozen=True)
class Reading:
    """One frame's reading: ``blendshapes`` name -> score in [0, 1]; None fields when no face was found."""

    blendshapes: dict[str, float] | None
    landmarks: np.ndarray | None  # (478, 3) normalised image coordinates (x, y in [0, 1], z relative depth)
    matrix: np.ndarray | None  # (4, 4) facial transformation matrix

    @property
    def found(self) -> bool:
        return self.blendshapes is not None

    def channel(self, name: str) -> float:
        """The mean of the blendshapes that read ground-truth channel ``name`` (NaN without a face)."""
        if self.blendshapes is None:
            return float("nan")
        return float(np.mean([self.blendshapes[b] for b in CHANNELS[name]]))


class FaceLandmarker:
    """The Face Landmarker, loaded once; :meth:`read` analyses one RGB uint8 frame."""

    def __init__(self) -> None:
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as e:
            raise MediaError(f"mediapipe is not importable ({e})",
                             hint="pip install --no-deps -r requirements-nodeps.txt (make setup does)") from None
        from ..assets import require

        model = require("mediapipe-face-landmarker", "the corpus check (MediaPipe Face Landmarker)")
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model)), running_mode=vision.RunningMode.IMAGE,
            num_faces=1, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
        self._mp = _module()
        self._task = vision.FaceLandmarker.create_from_options(opts)

    def read(self, frame: np.ndarray) -> Reading:
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        res = self._task.detect(image)
        if not res.face_blendshapes:
            return Reading(None, None, None)
        shapes = {c.category_name: float(c.score) for c in res.face_blendshapes[0]}
        lms = np.array([[p.x, p.y, p.z] for p in res.face_landmarks[0]], np.float64)
        matrix = np.asarray(res.facial_transformation_matrixes[0], np.float64) if res.facial_transformation_matrixes \
            else None
        return Reading(shapes, lms, matrix)

    def close(self) -> None:
        self._task.close()

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.lru_cache(maxsize=1)
def _module():  # noqa: ANN202 - the mediapipe module (its Image type)
    import mediapipe

    return mediapipe
