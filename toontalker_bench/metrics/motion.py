"""Expression and pose distances (AED / APD) from 3DMM motion estimates.

``aed_exp``: mean L1 distance between the expression codes of generated and driving frames.
``apd_deg``: mean L1 distance between (yaw, pitch, roll) in degrees. Both compare absolute codes, the literature's
form (PIRenderer, StyleHEAT), which under relative motion also charges the source's own pose and expression.
``aed_exp_rel`` / ``apd_rel_deg``: the same distances between the *changes* since the first frame (generated_t -
generated_0 against driving_t - driving_0): a perfect relative-motion method scores about 0, copying the source
scores the driving motion's size. All are averaged per pair (video) and then over pairs. Frames where either face is not usable are excluded and counted in ``face_miss_rate`` (also its own metric).
FOMM's identity-embedding distance is a different quantity and lives in :mod:`.identity` as ``aed_id``.

Motion backends (``MOTION_BACKENDS``) turn a pair's frames into a :class:`MotionEstimate`:

- ``bfm3ddfa`` fits the 3DDFA BFM subspace to dlib 68-point landmarks (10-D expression code), the jaw contour fitted as
  fixed surface points (the estimator as first released);
- ``bfm3ddfa-jaw-y`` is the same fit with the jaw contour constraining only the image-vertical coordinate (dlib puts the
  contour on the visible silhouette, which slides across the cheek as the head turns): generic, and measured better
  on the demo corpus (docs/metrics-validation.md);
- ``corpus-ridge`` is CORPUS-SPECIFIC: ridge maps from landmark geometry and HOG appearance to the 17 morphs and to a
  correction of ``bfm3ddfa-jaw-y``'s angles, fitted on the train split of the dataset being evaluated, which must carry
  ground-truth motion (the demo corpus does). Its expression output is in morph units. Without a dataset with
  ground-truth motion it falls back to ``bfm3ddfa-jaw-y``, logs why, and its values carry that backend's name;
- ``deep3d`` reads Deep3DFaceRecon-style coefficient arrays the user supplies (257-D per frame);
- ``mediapipe`` runs MediaPipe's Face Landmarker (its own face detector, 478 landmarks, 52 blendshapes): head pose
  from the 468 mesh landmarks' image positions against MediaPipe's canonical face mesh (a scaled orthographic camera
  fit, :func:`~toontalker_bench.faces.mediapipe.landmark_pose`), the 52 blendshape scores in [0, 1] as its
  expression code. Generic (nothing fitted on any corpus); frames where it finds no face are not usable.

AED values are comparable only between runs with the same backend string (``corpus-ridge:<dataset>:<hash>`` names the
dataset and the train split it was fitted on).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError
from ..core.registry import Registry
from ..faces.bfm import MotionEstimate, get_bfm
from .base import Metric, MetricOptions, MetricValue, register, video_mean
from .pair import Pair, Which


class MotionBackend:
    name = "motion"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        raise NotImplementedError


MOTION_BACKENDS: Registry[type[MotionBackend]] = Registry("motion backend", entry_point_group="toontalker_bench.motion")
log = logging.getLogger(__name__)


@functools.cache
def motion_backend(name: str, dataset_dir: str | None = None) -> MotionBackend:
    """Backend instances are shared: the BFM files are read (and a corpus map fitted) once per process. A backend
    whose constructor takes ``dataset_dir`` gets the dataset being evaluated."""
    factory = MOTION_BACKENDS.get(name).factory
    takes = "dataset_dir" in inspect.signature(factory).parameters
    return factory(dataset_dir=dataset_dir) if takes else factory()


def pair_motion(pair: Pair, which: Which, backend: str, dataset_dir: str | None = None) -> MotionEstimate:
    """The motion estimate of one side of a pair, computed once per pair and backend."""
    return pair.cached(("motion", which, backend, dataset_dir),
                       lambda: motion_backend(backend, dataset_dir).estimate(pair, which))


def _track_extra(track) -> dict[str, int]:  # noqa: ANN001 - FaceTrack
    return {"box_fallback": int(track.fallback.sum()), "detected": int(track.detected.sum())}


@MOTION_BACKENDS.register("bfm3ddfa", "3DDFA BFM subspace fitted to dlib 68-point landmarks (10-D expression)")
class BFMLandmarkBackend(MotionBackend):
    name = "bfm3ddfa"
    contour = "full"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        track = pair.faces(which)
        return get_bfm(self.contour).estimate(track.landmarks68, extra=_track_extra(track))


@MOTION_BACKENDS.register("bfm3ddfa-jaw-y", "3DDFA BFM subspace fitted to dlib 68-point landmarks, the jaw contour "
                                            "constraining only the vertical (10-D expression)")
class BFMJawYBackend(BFMLandmarkBackend):
    name = "bfm3ddfa-jaw-y"
    contour = "vertical"


CORPUS_FALLBACK = "bfm3ddfa-jaw-y"


def motion_cache_dir() -> Path:
    root = os.environ.get("TOONTALKER_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "toontalker-bench")
    return Path(root) / "features" / "motion"


def corpus_train_clips(dataset_dir: str | os.PathLike[str]) -> tuple[Path, list[dict[str, object]]]:
    """The train-split clips of a built dataset that carry ground-truth motion (a DatasetError saying why when none
    do): ``[{clip_id, domain, identity, video, npz}]``."""
    import pandas as pd

    root = Path(dataset_dir)
    table_path = root / "clips.parquet"
    if not table_path.is_file():
        raise DatasetError(f"no clip table {table_path}")
    table = pd.read_parquet(table_path)
    missing = {"clip_id", "domain", "identity", "split", "path"} - set(table.columns)
    if missing:
        raise DatasetError(f"{table_path} lacks columns {sorted(missing)}")
    clips = []
    for row in table[table["split"] == "train"].sort_values("clip_id").itertuples():
        npz = (root / str(row.path)).with_suffix(".npz")
        if not npz.is_file():
            continue
        with np.load(npz) as z:
            has = "motion" in z and bool(np.isfinite(z["motion"]).all(1).any())
        if has:
            clips.append({"clip_id": str(row.clip_id), "domain": str(row.domain), "identity": str(row.identity),
                          "video": root / str(row.path), "npz": npz})
    if not clips:
        raise DatasetError(f"no train clip of {root} carries ground-truth motion")
    return root, clips


def corpus_key(root: Path, clips: list[dict[str, object]], frames_per_clip: int) -> str:
    """Content hash of what a corpus map is fitted from: the clip table, the train clips and their annotations."""
    from ..faces.motion_map import FEATURE_VERSION

    h = hashlib.sha256(f"corpus-ridge v{FEATURE_VERSION} frames_per_clip={frames_per_clip}".encode())
    h.update((root / "clips.parquet").read_bytes())
    for c in clips:
        for p in (c["video"], c["npz"]):
            h.update(Path(p).read_bytes())  # type: ignore[arg-type]
    return h.hexdigest()


def corpus_features(clips: list[dict[str, object]], frames_per_clip: int = 48, analyzer=None,  # noqa: ANN001
                    extra: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = None
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What a corpus map is fitted on: the feature blocks of ``frames_per_clip`` evenly spaced frames of each clip
    (landmarks by the evaluation's face analyzer, so features match what the backend sees later), their pose vectors,
    and each row's domain, identity and clip id. ``extra(frames, landmarks68)`` adds blocks of one's own (a
    benchmark's candidate features)."""
    from ..core.progress import progress
    from ..core.video import read_frames
    from ..faces.analyzer import FaceAnalyzer
    from ..faces.motion_map import motion_features

    analyzer = analyzer or FaceAnalyzer()
    feats: dict[str, list[np.ndarray]] = {}  # every block motion_features (and ``extra``) returns, in its order
    ys, doms, groups, ids = [], [], [], []
    for c in progress(clips, desc="corpus map: train clips", unit="clip"):
        frames = read_frames(c["video"])  # type: ignore[arg-type]
        with np.load(c["npz"]) as z:  # type: ignore[arg-type]
            motion = np.asarray(z["motion"], np.float64)[: len(frames)]
        n = min(len(frames), len(motion))
        idx = np.unique(np.linspace(0, n - 1, min(n, frames_per_clip)).round().astype(int))
        track = analyzer.track(frames[idx], desc=str(c["clip_id"]))
        f = motion_features(frames[idx], track.landmarks68)
        if extra is not None:
            f |= extra(frames[idx], track.landmarks68)
        for k, v in f.items():
            feats.setdefault(k, []).append(v)
        ys.append(motion[idx])
        doms += [c["domain"]] * len(idx)
        groups += [c["identity"]] * len(idx)
        ids += [c["clip_id"]] * len(idx)
    return ({k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(ys), np.array(doms), np.array(groups),
            np.array(ids))


def fit_corpus_map(clips: list[dict[str, object]], frames_per_clip: int = 48, analyzer=None):  # noqa: ANN001, ANN201
    """Fit :class:`~toontalker_bench.faces.motion_map.PoseVectorRidge` on :func:`corpus_features`."""
    from ..faces.motion_map import PoseVectorRidge

    feats, y, doms, groups, _ = corpus_features(clips, frames_per_clip, analyzer)
    return PoseVectorRidge.fit(feats, y, doms, groups)


@MOTION_BACKENDS.register("corpus-ridge", "CORPUS-SPECIFIC: landmark geometry + HOG -> 17 morphs and yaw/pitch/roll, "
                                          "ridge maps fitted on the evaluated dataset's train split (needs ground-"
                                          "truth motion, else falls back to bfm3ddfa-jaw-y)")
class CorpusRidgeBackend(MotionBackend):
    """See the module docstring. ``name`` is ``corpus-ridge:<dataset folder>:<content hash>`` when fitted, else the
    fallback's name; ``fallback_reason`` says why."""

    name = "corpus-ridge"

    def __init__(self, dataset_dir: str | os.PathLike[str] | None = None, frames_per_clip: int = 48,
                 model=None, label: str = "") -> None:  # noqa: ANN001 - a fitted PoseVectorRidge
        self.model, self.fallback_reason = model, ""
        if model is not None:
            self.name = f"corpus-ridge:{label or 'given'}"
            return
        try:
            if dataset_dir is None:
                raise DatasetError("no dataset was given to fit the map on (the evaluator passes the one it evaluates)")
            root, clips = corpus_train_clips(dataset_dir)
            key = corpus_key(root, clips, frames_per_clip)
            self.model = self._load_or_fit(key, clips, frames_per_clip)
            self.name = f"corpus-ridge:{root.resolve().name}:{key[:12]}"
            missing = sorted({"cartoon", "real"} - set(self.model.domains))
            if missing:
                log.warning("corpus-ridge: the train split has no ground-truth motion for %s; sequences of that domain "
                            "are mapped with the %s map", ", ".join(missing), self.model.domains[0])
        except DatasetError as e:
            self.model, self.name, self.fallback_reason = None, CORPUS_FALLBACK, str(e)
            log.warning("motion backend corpus-ridge falls back to %s: %s", CORPUS_FALLBACK, e)

    @staticmethod
    def _load_or_fit(key: str, clips: list[dict[str, object]], frames_per_clip: int):  # noqa: ANN205
        from ..core.io import atomic_path
        from ..faces.motion_map import PoseVectorRidge

        path = motion_cache_dir() / f"corpus-ridge-{key[:24]}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                return PoseVectorRidge.from_arrays(dict(z))
        model = fit_corpus_map(clips, frames_per_clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **model.to_arrays())
        return model

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        track = pair.faces(which)
        if self.model is None:
            est = get_bfm("vertical").estimate(track.landmarks68, extra=_track_extra(track))
            est.extra["fallback_reason"] = self.fallback_reason
            return est
        return self.estimate_frames(pair.face_frames(which), track.landmarks68, _track_extra(track))

    def estimate_frames(self, frames: np.ndarray, landmarks68: np.ndarray, extra: dict | None = None,
                        domain: str | None = None) -> MotionEstimate:
        """Frames + their 68 landmarks -> morphs (as ``exp``) and corrected angles."""
        from ..faces.motion_map import expression_weights, motion_features

        pred, ok, dom = self.model.predict(motion_features(frames, landmarks68), domain)
        extra = {**(extra or {}), "domain": dom}
        if dom in self.model.reliability:
            extra["exp_weights"] = expression_weights(self.model.reliability[dom])
        return MotionEstimate(pred[:, 17:], pred[:, :17], ok, self.name, extra)


@MOTION_BACKENDS.register("deep3d", "user-supplied Deep3DFaceRecon coefficients (257-D: 80 id, 64 exp, 80 tex, "
                                    "3 angles in radians, 27 light, 3 translation)")
class Deep3DCoefficientBackend(MotionBackend):
    """Reads ``pair.coefficients[which]`` ``(T, 257)``; rows of NaN mark frames where that estimator found no face.

    Deep3DFaceRecon's angles are rotations about x, y, z in radians; they are mapped to yaw = y, pitch = x,
    roll = z (degrees). Expression is the 64-D code.
    """

    name = "deep3d"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        from ..core.errors import UserError

        c = pair.coefficients.get(which)
        if c is None:
            raise UserError(f"motion backend deep3d needs {which} coefficients for pair {pair.pair_id or '?'}",
                            hint="supply (T, 257) Deep3DFaceRecon coefficient arrays")
        c = np.asarray(c, np.float64)
        if c.ndim != 2 or c.shape[1] != 257 or len(c) != len(pair.frames(which)):
            raise UserError(f"{which} coefficients must be (T={len(pair.frames(which))}, 257), got {c.shape}")
        c = c[pair.face_rows(which)]
        ok = np.isfinite(c).all(1)
        ang = np.degrees(c[:, 224:227])
        return MotionEstimate(ang[:, [1, 0, 2]], c[:, 80:144], ok, self.name)


@MOTION_BACKENDS.register("mediapipe", "MediaPipe Face Landmarker: head pose from its 468 2-D landmarks against the "
                                       "canonical face mesh, the 52 blendshapes as expression")
class MediaPipeBackend(MotionBackend):
    """See the module docstring. Its readings of driving and source frames are kept with the face tracks (the
    evaluator's disk cache), so the protocol's driving videos are read once across methods."""

    name = "mediapipe"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        from ..faces.mediapipe import model_tag, read_video

        return self.from_readings(pair.analysis(which, model_tag(), read_video), pair.face_frames(which).shape[1:3])

    def from_readings(self, readings: dict[str, np.ndarray], size: tuple[int, int]) -> MotionEstimate:
        """:func:`~toontalker_bench.faces.mediapipe.read_video`'s arrays of ``(H, W)`` frames -> the estimate."""
        from ..faces.mediapipe import landmark_pose

        exp = np.asarray(readings["blendshapes"], np.float64)
        ok = np.isfinite(exp).all(1)
        angles = np.full((len(ok), 3), np.nan)
        if ok.any():
            angles[ok] = landmark_pose(readings["landmarks"][ok], size)
        return MotionEstimate(angles, exp, ok, self.name)


class _MotionDistance(Metric):
    """Shared by AED/APD: per pair, mean over frames usable on both sides."""

    key = "exp"
    needs, default_for = frozenset({"faces", "driving"}), frozenset({"self", "cross"})

    def __init__(self, backend: str = "bfm3ddfa", dataset_dir: str | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.dataset_dir = None if dataset_dir is None else str(dataset_dir)
        self.add_state("_missed", 0, "sum")
        self.add_state("_total", 0, "sum")
        self.add_state("_used", None, "first")  # the backend the estimates report (a corpus map's name, or fallback)
        self.add_state("_fallback", None, "first")  # why the requested backend fell back, if it did
        self.add_state("_weighted", None, "first")  # how coefficients were weighted, when not uniformly
        # relative forms: sums over the compared frames for ``follow`` and ``change_ratio`` (see ``compute``)
        for name in ("_dot", "_drv_sq", "_gen_abs", "_drv_abs"):
            self.add_state(name, 0.0, "sum")

    @classmethod
    def from_options(cls, options: MetricOptions) -> _MotionDistance:
        return cls(options.motion_backend, options.dataset_dir)

    def _motion(self, pair: Pair, which: Which) -> MotionEstimate:
        est = pair_motion(pair, which, self.backend, self.dataset_dir)
        self._used = est.backend
        self._fallback = est.extra.get("fallback_reason") or self._fallback
        return est

    def _extra(self) -> dict[str, str]:
        out = {"motion_backend_fallback": self._fallback} if self._fallback else {}
        if self._weighted:
            out["coefficient_weights"] = self._weighted
        return out

    relative = False

    def update(self, pair: Pair) -> None:
        gen = self._motion(pair, "generated")
        drv = self._motion(pair, "driving")
        both = gen.ok & drv.ok
        self._total += len(both)
        self._missed += int((~both).sum())
        if not both.any():
            return
        a, b = getattr(gen, self.key), getattr(drv, self.key)
        w = self._weights(gen, drv, a.shape[1])
        if self.relative:  # changes since the first frame usable on both sides, which itself compares 0 with 0
            ref = int(np.flatnonzero(both)[0])
            a, b = a - a[ref], b - b[ref]
            both = both.copy()
            both[ref] = False
            if not both.any():
                return
        a, b = a[both], b[both]
        if w is not None:  # a weighted mean over coefficients (the weights sum to the number of coefficients)
            a, b = a * w, b * w
        if self.relative:
            self._dot += float((a * b).sum())
            self._drv_sq += float(np.square(b).sum())
            self._gen_abs += float(np.abs(a).sum())
            self._drv_abs += float(np.abs(b).sum())
        self._per_video.append(float(np.abs(a - b).mean(axis=1).mean()))
        self._n_frames += int(both.sum())

    def _weights(self, gen: MotionEstimate, drv: MotionEstimate, n: int) -> np.ndarray | None:
        """Per-coefficient weights with mean 1, or None (the plain mean over coefficients): expression codes whose
        backend says how reliably it reads each coefficient in each domain (``exp_weights``, corpus-ridge's held-out
        within-face reliability squared) get the smaller of the two sides' weights, so a morph counts as much as the
        worse-read of the two faces lets it; a morph no side can read adds none of its noise."""
        wg, wd = gen.extra.get("exp_weights"), drv.extra.get("exp_weights")
        if self.key != "exp" or wg is None or wd is None:
            return None
        w = np.minimum(np.asarray(wg, np.float64), np.asarray(wd, np.float64))
        if w.sum() <= 0:
            return None
        self._weighted = "reliability"
        return w * (n / w.sum())

    def compute(self) -> MetricValue:
        """The relative forms also say where their distance comes from, pooled over every compared frame and
        coefficient: ``follow`` = sum(dgen * ddrv) / sum(ddrv^2), the share of the driving change the output carries
        (1 = all of it, 0 = none: copying the source), and ``change_ratio`` = sum|dgen| / sum|ddrv|, how much the
        estimate of the output changes at all. ``change_ratio`` well above ``follow`` means the output's changes
        are mostly not the driver's (its own artefacts, or the estimator's noise on them)."""
        extra = {"face_miss_rate": self._missed / self._total if self._total else None, "frames_missed": self._missed,
                 **self._extra()}
        if self.relative and self._drv_sq > 0:
            extra["follow"] = self._dot / self._drv_sq
            extra["change_ratio"] = self._gen_abs / self._drv_abs
        return video_mean(self.name, self._per_video, self._used or self.backend, self._n_frames, extra,
                          reason="no frame had a usable face in both generated and driving")


class _ExpressionDistance(_MotionDistance):
    key, validation = "exp", "expression"
    answers_to, ignores = "expression", ("pose", "identity")


class _PoseDistance(_MotionDistance):
    key, validation = "angles", "pose"
    answers_to, ignores = "pose", ("expression", "identity")


@register
class AEDExp(_ExpressionDistance):
    """Mean L1 distance between 3DMM expression codes of generated and driving frames (per-coefficient mean)."""

    name, order, aliases = "aed_exp", 120, ("aed",)


@register
class APDDeg(_PoseDistance):
    """Mean L1 distance between yaw/pitch/roll of generated and driving frames, in degrees (mean of the three)."""

    name, order, aliases = "apd_deg", 110, ("apd",)


@register
class AEDExpRel(_ExpressionDistance):
    """Mean L1 distance between the expression changes since the first frame, generated vs driving:
    ``|(e_gen(t) - e_gen(0)) - (e_drv(t) - e_drv(0))|`` — what a relative-motion method should reproduce."""

    name, order, headline = "aed_exp_rel", 20, True
    relative = True


@register
class APDRelDeg(_PoseDistance):
    """Mean L1 distance between the head-rotation changes since the first frame, generated vs driving, in degrees:
    ``|(p_gen(t) - p_gen(0)) - (p_drv(t) - p_drv(0))|`` over yaw, pitch, roll."""

    name, order, headline = "apd_rel_deg", 10, True
    relative = True


@register
class FaceMissRate(_MotionDistance):
    """Fraction of generated frames whose face is not usable (not found, or landmarks no 3DMM face explains)."""

    name, order, needs, validation = "face_miss_rate", 130, frozenset({"faces"}), None

    def update(self, pair: Pair) -> None:
        gen = self._motion(pair, "generated")
        self._per_video.append(float((~gen.ok).mean()))
        self._n_frames += len(gen.ok)

    def compute(self) -> MetricValue:
        return video_mean(self.name, self._per_video, self._used or self.backend, self._n_frames, self._extra())
