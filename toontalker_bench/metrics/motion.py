"""Expression and pose distances (AED / APD) from 3DMM motion estimates.

``aed_exp``: mean L1 distance between the expression codes of generated and driving frames.
``apd_deg``: mean L1 distance between (yaw, pitch, roll) in degrees. Both compare absolute codes, the literature's
form (PIRenderer, StyleHEAT), which under relative motion also charges the source's own pose and expression.
``aed_exp_rel`` / ``apd_rel_deg``: the same distances between the *changes* since the first frame (generated_t -
generated_0 against driving_t - driving_0): a perfect relative-motion method scores about 0, copying the source
scores the driving motion's size. All are averaged per pair (video) and then over pairs. Frames where either face is not usable are excluded and counted in ``face_miss_rate`` (also its own metric).
FOMM's identity-embedding distance is a different quantity and lives in :mod:`.identity` as ``aed_id``.

Motion backends (``MOTION_BACKENDS``) turn a pair's frames into a :class:`MotionEstimate`:
``bfm3ddfa`` fits the 3DDFA BFM subspace to dlib 68-point landmarks (offline default);
``deep3d`` reads Deep3DFaceRecon-style coefficient arrays the user supplies (257-D per frame).
"""

from __future__ import annotations

import functools

import numpy as np

from ..faces.bfm import MotionEstimate, default_bfm
from ..registry import Registry
from .base import METRICS, Metric, MetricValue, video_mean
from .pair import Pair, Which


class MotionBackend:
    name = "motion"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        raise NotImplementedError


MOTION_BACKENDS: Registry[type[MotionBackend]] = Registry("motion backend", entry_point_group="toontalker_bench.motion")


@functools.cache
def motion_backend(name: str) -> MotionBackend:
    """Backend instances are shared: the BFM files are read once per process."""
    return MOTION_BACKENDS.create(name)


def pair_motion(pair: Pair, which: Which, backend: str) -> MotionEstimate:
    """The motion estimate of one side of a pair, computed once per pair and backend."""
    return pair.cached(("motion", which, backend), lambda: motion_backend(backend).estimate(pair, which))


@MOTION_BACKENDS.register("bfm3ddfa", "3DDFA BFM subspace fitted to dlib 68-point landmarks (10-D expression)")
class BFMLandmarkBackend(MotionBackend):
    name = "bfm3ddfa"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        track = pair.faces(which)
        return default_bfm().estimate(track.landmarks68, extra={"box_fallback": int(track.fallback.sum()),
                                                               "detected": int(track.detected.sum())})


@MOTION_BACKENDS.register("deep3d", "user-supplied Deep3DFaceRecon coefficients (257-D: 80 id, 64 exp, 80 tex, "
                                    "3 angles in radians, 27 light, 3 translation)")
class Deep3DCoefficientBackend(MotionBackend):
    """Reads ``pair.coefficients[which]`` ``(T, 257)``; rows of NaN mark frames where that estimator found no face.

    Deep3DFaceRecon's angles are rotations about x, y, z in radians; they are mapped to yaw = y, pitch = x,
    roll = z (degrees). Expression is the 64-D code.
    """

    name = "deep3d"

    def estimate(self, pair: Pair, which: Which) -> MotionEstimate:
        from ..errors import UserError

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


class _MotionDistance(Metric):
    """Shared by AED/APD: per pair, mean over frames usable on both sides."""

    key = "exp"

    def __init__(self, backend: str = "bfm3ddfa") -> None:
        self.backend = backend
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self._missed = 0
        self._total = 0

    relative = False

    def update(self, pair: Pair) -> None:
        gen = pair_motion(pair, "generated", self.backend)
        drv = pair_motion(pair, "driving", self.backend)
        both = gen.ok & drv.ok
        self._total += len(both)
        self._missed += int((~both).sum())
        if not both.any():
            return
        a, b = getattr(gen, self.key), getattr(drv, self.key)
        if self.relative:  # changes since the first frame usable on both sides, which itself compares 0 with 0
            ref = int(np.flatnonzero(both)[0])
            a, b = a - a[ref], b - b[ref]
            both = both.copy()
            both[ref] = False
            if not both.any():
                return
        self._per_video.append(float(np.abs(a[both] - b[both]).mean(axis=1).mean()))
        self._n_frames += int(both.sum())

    def compute(self) -> MetricValue:
        extra = {"face_miss_rate": self._missed / self._total if self._total else None, "frames_missed": self._missed}
        return video_mean(self.name, self._per_video, self.backend, self._n_frames, extra,
                          reason="no frame had a usable face in both generated and driving")


@METRICS.register("aed_exp", direction="lower")
class AEDExp(_MotionDistance):
    """Mean L1 distance between 3DMM expression codes of generated and driving frames (per-coefficient mean)."""

    name = "aed_exp"
    key = "exp"


@METRICS.register("apd_deg", direction="lower")
class APDDeg(_MotionDistance):
    """Mean L1 distance between yaw/pitch/roll of generated and driving frames, in degrees (mean of the three)."""

    name = "apd_deg"
    key = "angles"


@METRICS.register("aed_exp_rel", direction="lower")
class AEDExpRel(_MotionDistance):
    """Mean L1 distance between the expression changes since the first frame, generated vs driving:
    ``|(e_gen(t) - e_gen(0)) - (e_drv(t) - e_drv(0))|`` — what a relative-motion method should reproduce."""

    name = "aed_exp_rel"
    key = "exp"
    relative = True


@METRICS.register("apd_rel_deg", direction="lower")
class APDRelDeg(_MotionDistance):
    """Mean L1 distance between the head-rotation changes since the first frame, generated vs driving, in degrees:
    ``|(p_gen(t) - p_gen(0)) - (p_drv(t) - p_drv(0))|`` over yaw, pitch, roll."""

    name = "apd_rel_deg"
    key = "angles"
    relative = True


@METRICS.register("face_miss_rate", direction="lower")
class FaceMissRate(_MotionDistance):
    """Fraction of generated frames whose face is not usable (not found, or landmarks no 3DMM face explains)."""

    name = "face_miss_rate"

    def update(self, pair: Pair) -> None:
        gen = pair_motion(pair, "generated", self.backend)
        self._per_video.append(float((~gen.ok).mean()))
        self._n_frames += len(gen.ok)

    def compute(self) -> MetricValue:
        return video_mean(self.name, self._per_video, self.backend, self._n_frames)
