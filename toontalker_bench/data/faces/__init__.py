"""Face detection, landmarks and tracking for the ``faces`` stage (see docs/architecture.md)."""

from .detect import DETECTORS, Detection, Detector, get_detector
from .landmarks import five_from_68, get_landmarker
from .stage import run

__all__ = ["DETECTORS", "Detection", "Detector", "five_from_68", "get_detector", "get_landmarker", "run"]
