"""Evaluation inputs: frame loading with clear errors, and the per-pair context that caches face analyses."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..core.errors import MediaError, UserError

if TYPE_CHECKING:
    from ..faces.analyzer import FaceAnalyzer, FaceTrack

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
Which = Literal["generated", "driving", "source"]


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Sorted image files of ``folder``; any other regular file is an error (a stray file silently changes FID)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise MediaError(f"empty folder: {folder}", hint="point at a folder of PNG/JPEG frames or an mp4 file")
    bad = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if bad:
        raise MediaError(f"non-image file in {folder}: {bad[0]} ({len(bad)} in all)",
                         hint=f"keep only {', '.join(IMAGE_EXTENSIONS)} files there")
    return files


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise MediaError(f"cannot read image {path}: {e}", hint="re-export the frame as PNG") from None


def load_frames(path: str | os.PathLike[str], what: str = "frames") -> np.ndarray:
    """A folder of images, an mp4 or a single image -> uint8 ``(T, H, W, 3)``; all frames must share one size."""
    from ..core.video import read_frames

    p = Path(path)
    if p.is_dir():
        files = list_images(p)
        frames, names = [read_image(f) for f in files], [f.name for f in files]
    elif p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
        return read_frames(p)
    elif p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
        frames, names = [read_image(p)], [p.name]
    elif p.exists():
        raise MediaError(f"{what} must be a folder of images, an image or a video, got {p}")
    else:
        raise MediaError(f"{what} not found: {p}")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        first = frames[0].shape
        odd = next(n for n, f in zip(names, frames) if f.shape != first)
        raise MediaError(f"frames of different resolutions in {p}: {odd} is {_wh(frames[names.index(odd)])}, "
                         f"{names[0]} is {_wh(frames[0])}", hint="resize all frames to one size")
    return np.stack(frames)


def _wh(f: np.ndarray) -> str:
    return f"{f.shape[1]}x{f.shape[0]}"


@dataclass
class Pair:
    """One evaluation pair. ``generated``/``driving``: uint8 ``(T, H, W, 3)``; ``source``: uint8 ``(H, W, 3)``.

    Pixel metrics compare the frames as given (the method's size). Face analysis — detection, landmarks, the 3DMM
    fit, identity embeddings, AKD — runs on :meth:`face_frames`: ``full`` frames where given (the dataset's
    full-resolution driving and source frames), otherwise the frames resized to ``analysis_size`` (bicubic when
    upscaling, area when downscaling; 0 keeps them), every ``face_stride``-th frame of a sequence. Face tracks and
    motion estimates are computed once per pair and shared by every metric; with a ``disk`` cache the driving and
    source analyses are also kept across runs, keyed by the frames' content. ``coefficients`` optionally holds
    user-supplied 3DMM coefficients per sequence.
    """

    generated: np.ndarray
    driving: np.ndarray | None = None
    source: np.ndarray | None = None
    pair_id: str = ""
    analyzer: FaceAnalyzer | None = None
    coefficients: dict[str, np.ndarray] = field(default_factory=dict)
    full: dict[str, np.ndarray] = field(default_factory=dict)
    analysis_size: int = 0
    face_stride: int = 1
    disk: AnalysisCache | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.generated = _as_frames(self.generated, "generated")
        if self.driving is not None:
            self.driving = _as_frames(self.driving, "driving")
            if len(self.driving) != len(self.generated):
                raise UserError(f"pair {self.pair_id or '?'}: {len(self.generated)} generated frames but "
                                f"{len(self.driving)} driving frames", hint="generated and driving must align 1:1")
            if self.driving.shape[1:] != self.generated.shape[1:]:
                raise UserError(f"pair {self.pair_id or '?'}: generated frames are {_wh(self.generated[0])} but "
                                f"driving frames are {_wh(self.driving[0])}", hint="resize both to the same size")
        if self.source is not None:
            self.source = np.asarray(self.source)
            if self.source.ndim == 4:
                self.source = self.source[0]
        if "driving" in self.full and len(self.full["driving"]) != len(self.generated):
            raise UserError(f"pair {self.pair_id or '?'}: full-size driving frames do not match the generated ones")

    def frames(self, which: Which) -> np.ndarray:
        arr = getattr(self, which)
        if arr is None:
            raise UserError(f"pair {self.pair_id or '?'} has no {which} frames", hint=f"pass --{which}")
        return arr if which != "source" else arr[None]

    def face_rows(self, which: Which) -> np.ndarray:
        """Indices of the frames of ``which`` that face analysis sees."""
        n = len(self.frames(which))
        return np.arange(0, n, self.face_stride if which != "source" else 1)

    def face_frames(self, which: Which) -> np.ndarray:
        """The frames face analysis sees (see the class docstring)."""
        def compute() -> np.ndarray:
            full = self.full.get(which)
            arr = (full if full.ndim == 4 else full[None]) if full is not None else self.frames(which)
            arr = arr[self.face_rows(which)]
            if self.analysis_size and arr.shape[1:3] != (self.analysis_size, self.analysis_size):
                arr = resize_frames(arr, self.analysis_size)
            return arr
        return self.cached(("face_frames", which), compute)

    def faces(self, which: Which) -> FaceTrack:
        if self.analyzer is None:
            from ..faces.analyzer import FaceAnalyzer

            self.analyzer = FaceAnalyzer()
        analyzer = self.analyzer

        def compute() -> FaceTrack:
            frames, disk = self.face_frames(which), self._disk_for(which)
            if disk is None:
                return analyzer.track(frames, desc=f"landmarks ({which})")
            return disk.track(analyzer, frames, desc=f"landmarks ({which})")
        return self.cached(("faces", which), compute)

    def analysis(self, which: Which, tag: str, compute: Callable[[np.ndarray], dict[str, np.ndarray]]
                 ) -> dict[str, np.ndarray]:
        """``compute(face_frames)``'s arrays, once per pair; those of driving and source frames also kept on disk
        across runs (with a ``disk`` cache), keyed by the frames' content and ``tag`` (the analysis and its model)."""
        def run() -> dict[str, np.ndarray]:
            frames, disk = self.face_frames(which), self._disk_for(which)
            return compute(frames) if disk is None else disk.arrays(tag, frames, lambda: compute(frames))
        return self.cached(("analysis", which, tag), run)

    def _disk_for(self, which: Which) -> AnalysisCache | None:
        """The disk cache for analyses of ``which``: none for generated frames (one method's, not worth keeping)."""
        return None if which == "generated" else self.disk

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per pair and ``key``: analyses every metric of the pair shares (motion fits, features)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` -> ``(T, size, size, 3)``: bicubic when enlarging, area averaging when shrinking."""
    import cv2

    interp = cv2.INTER_CUBIC if size > frames.shape[1] else cv2.INTER_AREA
    return np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interp) for f in frames])


def as_method_output(frames: np.ndarray, size: int, analysis_size: int) -> np.ndarray:
    """``frames`` as the evaluation reads a ``size``-px method output: shrunk to ``size`` (area averaging, as a method
    resizes its output) and enlarged back to ``analysis_size`` (bicubic, as :class:`Pair` does); unchanged when
    ``size`` is 0 or not below the frames' size."""
    if not size or size >= frames.shape[1]:
        return frames
    return resize_frames(resize_frames(frames, size), analysis_size or frames.shape[1])


class AnalysisCache:
    """Face analyses of frame sequences on disk (face tracks, MediaPipe readings), keyed by the frames' bytes and the
    analysis (the analyzer's backend string): the driving and source frames of the protocol are the same for every
    method, so each is analysed once across runs."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def track(self, analyzer: FaceAnalyzer, frames: np.ndarray, desc: str = "landmarks") -> FaceTrack:
        from ..faces.analyzer import FaceTrack

        def compute() -> dict[str, np.ndarray]:
            t = analyzer.track(frames, desc=desc)
            return {"landmarks68": t.landmarks68, "landmarks5": t.landmarks5, "detected": t.detected,
                    "fallback": t.fallback, "size": np.asarray(t.size)}

        z = self.arrays(analyzer.backend, frames, compute)
        return FaceTrack(z["landmarks68"], z["landmarks5"], z["detected"], z["fallback"], int(z["size"]))

    def arrays(self, tag: str, frames: np.ndarray, compute: Callable[[], dict[str, np.ndarray]]
               ) -> dict[str, np.ndarray]:
        """``compute()``'s arrays for ``frames``, read from disk when an analysis named ``tag`` of the same frames
        is there."""
        import hashlib

        from ..core.io import atomic_path

        frames = np.ascontiguousarray(frames)
        key = hashlib.sha256(str(frames.shape).encode() + tag.encode() + frames.data).hexdigest()
        path = self.root / key[:2] / f"{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                return dict(z)
        out = compute()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **out)
        return out


def _as_frames(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise UserError(f"{what} frames must be uint8 (T, H, W, 3), got {a.dtype} {a.shape}")
    if len(a) == 0:
        raise UserError(f"no {what} frames")
    return a
