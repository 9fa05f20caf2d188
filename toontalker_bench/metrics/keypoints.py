"""Average keypoint distance (AKD): mean Euclidean distance between the 68 dlib landmarks of generated and driving
frames, in pixels at 256x256 (frames of another size are scaled to 256). Frames without a usable face on either side
are excluded and counted in ``extra['face_miss_rate']``."""

from __future__ import annotations

import numpy as np

from .base import Metric, MetricValue, register, video_mean
from .pair import Pair


@register
class AKD(Metric):
    """Mean 68-point landmark distance between generated and driving frames, pixels at 256."""

    name, direction, order = "akd", "lower", 70
    needs, default_for = frozenset({"faces", "driving"}), frozenset({"self"})

    def __init__(self) -> None:
        super().__init__()
        self.add_state("_missed", 0, "sum")
        self.add_state("_total", 0, "sum")

    def update(self, pair: Pair) -> None:
        gen, drv = pair.faces("generated"), pair.faces("driving")
        ok = gen.has_landmarks & drv.has_landmarks
        self.backend = pair.analyzer.backend if pair.analyzer is not None else ""
        self._total += len(ok)
        self._missed += int((~ok).sum())
        if ok.any():
            d = np.linalg.norm(gen.landmarks68[ok] - drv.landmarks68[ok], axis=-1).mean(axis=1)
            self._per_video.append(float(d.mean() * 256.0 / gen.size))
            self._n_frames += int(ok.sum())

    def compute(self) -> MetricValue:
        extra = {"face_miss_rate": self._missed / self._total if self._total else None, "frames_missed": self._missed}
        return video_mean(self.name, self._per_video, self.backend, self._n_frames, extra,
                          reason="no frame had a usable face in both generated and driving")
