"""MediaPipe's Face Landmarker as an instrument: blendshapes (52 ARKit-style coefficients), 478 landmarks and the
facial transformation matrix per frame, from a model nobody here trained (asset ``mediapipe-face-landmarker``).

The corpus check (:mod:`..data.corpus_check`) reads its blendshapes against the demo corpus's ground truth; the
``mediapipe`` motion backend (:mod:`..metrics.motion`) reads head pose from the landmarks (:func:`landmark_pose`) and
takes the blendshapes as its expression code. Frames are analysed one at a time (IMAGE mode), so a result never
depends on the frame before it.
"""

from __future__ import annotations

import functools
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from ..core.errors import MediaError

N_BLENDSHAPES = 52  # the blendshape head's outputs ("_neutral" and 51 of ARKit's names), in the model's order
N_MESH = 468  # landmarks on the canonical face mesh (the other 10 of the 478 are the irises)
ASSET = "mediapipe-face-landmarker"

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

        model = require(ASSET, "the corpus check and motion backend mediapipe (MediaPipe Face Landmarker)")
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

    def read_sequence(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Readings of ``(T, H, W, 3)`` frames as arrays, NaN rows where no face was found: ``landmarks``
        ``(T, 478, 3)``, ``matrix`` ``(T, 4, 4)``, ``blendshapes`` ``(T, 52)`` in the model's order; float32, the
        model's own precision (they are kept on disk for driving frames)."""
        t = len(frames)
        out = {"landmarks": np.full((t, N_MESH + 10, 3), np.nan, np.float32),
               "matrix": np.full((t, 4, 4), np.nan, np.float32),
               "blendshapes": np.full((t, N_BLENDSHAPES), np.nan, np.float32)}
        for i, frame in enumerate(frames):
            r = self.read(frame)
            if not r.found:
                continue
            out["blendshapes"][i] = list(r.blendshapes.values())  # type: ignore[union-attr]
            out["landmarks"][i] = r.landmarks
            if r.matrix is not None:
                out["matrix"][i] = r.matrix
        return out

    def close(self) -> None:
        self._task.close()

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_video(frames: np.ndarray) -> dict[str, np.ndarray]:
    """:meth:`FaceLandmarker.read_sequence` with a landmarker of its own, closed on return (opening one costs about
    0.05 s; one left open until the interpreter exits makes mediapipe print a traceback as it shuts down)."""
    with FaceLandmarker() as landmarker:
        return landmarker.read_sequence(frames)


def model_tag() -> str:
    """Names the model in analysis caches: the asset and its pinned sha256."""
    from ..assets import catalogue

    return f"{ASSET}:{catalogue.spec(ASSET).sha256[:16]}"


@functools.lru_cache(maxsize=1)
def _module():  # noqa: ANN202 - the mediapipe module (its Image type)
    import mediapipe

    return mediapipe


def landmark_pose(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(B, 478, 3)`` normalised landmarks of ``(H, W)`` frames -> ``(B, 3)`` yaw, pitch, roll in degrees
    (:mod:`.pose` conventions): the scaled orthographic camera that maps the canonical face mesh onto the 468 mesh
    landmarks' image positions (their predicted depth is not used). The head matrix (:func:`matrix_pose`) rests on
    that depth, which the model under-predicts: it reads yaw at about 0.65 of the truth (docs/metrics.md)."""
    from .bfm import orthographic_pose

    h, w = size
    return orthographic_pose(canonical_mesh(), np.asarray(landmarks)[:, :N_MESH, :2] * (w, h))


def matrix_pose(matrix: np.ndarray) -> np.ndarray:
    """``(B, 4, 4)`` facial transformation matrices -> ``(B, 3)`` yaw, pitch, roll in degrees. MediaPipe's metric
    space has the BFM frame's axes (x right, y up, z to the camera) and the matrix no scale."""
    from .bfm import euler_degrees

    return euler_degrees(np.asarray(matrix, np.float64)[:, :3, :3])


@functools.cache
def canonical_mesh() -> np.ndarray:
    """MediaPipe's canonical face mesh, ``(468, 3)`` centimetres (x right, y up, z to the camera), read from the
    bundle's geometry pipeline metadata: a ``GeometryPipelineMetadata`` protobuf whose field 1 is the ``Mesh3d``,
    whose field 3 is the vertex buffer, five floats (x, y, z, u, v) per vertex. The asset is sha256-pinned, so the
    layout is the one read here."""
    from ..assets import require

    path = require(ASSET, "motion backend mediapipe (canonical face mesh)")
    with zipfile.ZipFile(path) as z:
        meta = z.read("geometry_pipeline_metadata_landmarks.binarypb")
    mesh3d = next(v for f, v in _fields(meta) if f == 1)
    vertices = [struct.unpack("<f", v)[0] for f, v in _fields(mesh3d) if f == 3]  # type: ignore[arg-type]
    mesh = np.ascontiguousarray(np.asarray(vertices, np.float64).reshape(N_MESH, 5)[:, :3])
    mesh.flags.writeable = False  # shared by every caller
    return mesh


def _fields(buf: bytes) -> list[tuple[int, bytes | int]]:
    """The top-level ``(field number, value)`` pairs of a protobuf message: varints as int, the rest as bytes."""
    out: list[tuple[int, bytes | int]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        kind = key & 7
        if kind == 0:
            value, i = _varint(buf, i)
            out.append((key >> 3, value))
            continue
        if kind == 2:
            n, i = _varint(buf, i)
        else:  # fixed64 or fixed32 (the groups, 3 and 4, are deprecated and not used here)
            n = {1: 8, 5: 4}[kind]
        out.append((key >> 3, buf[i:i + n]))
        i += n
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i
