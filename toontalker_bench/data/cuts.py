"""Shot cuts, one frame at a time: PySceneDetect's detectors fed from frames someone else decodes.

The tubes stage decodes each source once and hands every frame to a :class:`CutFinder` before it tracks faces in it
(so shots cost no decode of their own). The detectors see frames subsampled to about ``cuts.downscale_width`` pixels
wide, taken straight from the decoded YUV planes (they only need coarse HSV statistics; full-size colour conversion
would cost as much as decoding).

PySceneDetect may report a cut some frames after it happened (its flash filter merges cuts closer than
``min_shot_frames``; the adaptive detector looks ``window_width`` frames ahead): :attr:`CutFinder.delay` says how
many. A consumer that needs to know whether frame ``i`` ends a shot therefore waits until frame
``i + 1 + delay`` has been pushed (or the video has ended).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..core.config import CutsParams
from ..core.errors import ConfigError
from ..core.video import DecodedFrame

DETECTORS = ("content", "adaptive")


def small_bgr(frame: DecodedFrame, step: int) -> np.ndarray:
    """The frame subsampled ``step`` times in each direction, as BGR (what the detectors look at).

    yuv420p frames are subsampled on their planes (every ``step``-th sample) and only the small image is converted;
    other pixel formats are scaled by PyAV.
    """
    import cv2

    w = max(2, frame.width // step // 2 * 2)
    h = max(2, frame.height // step // 2 * 2)
    if not frame.is_yuv420p:
        return frame.av.to_ndarray(format="bgr24", width=w, height=h)

    def sub(i: int, rows: int, cols: int) -> np.ndarray:
        pl = frame.av.planes[i]
        return np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[::step, ::step][:rows, :cols]

    i420 = np.concatenate([sub(0, h, w).ravel(), sub(1, h // 2, w // 2).ravel(), sub(2, h // 2, w // 2).ravel()])
    return cv2.cvtColor(i420.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)


def check_params(p: CutsParams) -> None:
    if p.detector not in DETECTORS:
        raise ConfigError(f"unknown cuts.detector {p.detector!r}", hint="use content or adaptive")
    if p.min_shot_frames < 1 or p.downscale_width < 1:
        raise ConfigError("cuts.min_shot_frames and cuts.downscale_width must be >= 1")


class CutFinder:
    """Feed frames in order with :meth:`push`; it returns the cuts (frame indices that start a new shot) it has
    become sure of, at most :attr:`delay` frames late. :meth:`finish` returns the last ones."""

    def __init__(self, p: CutsParams, width: int, fps: float) -> None:
        from scenedetect import AdaptiveDetector, ContentDetector

        check_params(p)
        self.step = max(1, width // max(1, p.downscale_width))
        self.rate = Fraction(fps).limit_denominator(1001)
        if p.detector == "content":
            self.detector = ContentDetector(threshold=p.threshold, min_scene_len=p.min_shot_frames)
        else:
            self.detector = AdaptiveDetector(adaptive_threshold=p.adaptive_threshold, min_scene_len=p.min_shot_frames)
        self.delay = int(self.detector.event_buffer_length)
        assert self.delay == self.delay_for(p), "PySceneDetect's event buffer changed: update CutFinder.delay_for"
        self.last = -1
        self.first = -1

    @staticmethod
    def delay_for(p: CutsParams) -> int:
        """How many frames late a cut may be reported (PySceneDetect's ``event_buffer_length``): the flash filter's
        ``min_shot_frames`` for the content detector, the window for the adaptive one."""
        return p.min_shot_frames if p.detector == "content" else 2

    def _tc(self, index: int):  # noqa: ANN202 - scenedetect FrameTimecode
        from scenedetect import FrameTimecode

        return FrameTimecode(index, fps=self.rate)

    def push(self, frame: DecodedFrame) -> list[int]:
        if self.first < 0:
            self.first = frame.index
        self.last = frame.index
        cuts = self.detector.process_frame(self._tc(frame.index), small_bgr(frame, self.step))
        return [int(c.frame_num) for c in cuts]

    def finish(self) -> list[int]:
        if self.last < 0:
            return []
        return [int(c.frame_num) for c in self.detector.post_process(self._tc(self.last))]


def shots_from_cuts(cuts: list[int], first: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` shots of the frames ``[first, end)`` split at ``cuts`` (as PySceneDetect's scene list)."""
    bounds = [first] + sorted({c for c in cuts if first < c < end}) + [end]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
