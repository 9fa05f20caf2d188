"""Video I/O through PyAV: probing, frame iteration, H.264 writing. No system ffmpeg needed."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import MediaError
from .io import atomic_path


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    n_frames: int
    duration_s: float
    codec: str


def _open(path: str | os.PathLike[str]):  # noqa: ANN202 - av container
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise MediaError(f"cannot open video {path}: {e}", hint="check the file is a complete video") from e


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read stream metadata. ``n_frames`` is counted by demuxing when the container does not record it."""
    import av

    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {path}", hint="the file is not a video")
        s = c.streams.video[0]
        fps = float(s.average_rate or s.guessed_rate or 25)
        n = s.frames
        if not n:
            try:
                n = sum(1 for p in c.demux(s) if p.size)
            except av.error.FFmpegError as e:  # type: ignore[attr-defined]
                raise MediaError(f"corrupt video {path}: {e}", hint="re-download or remove it") from e
        dur = n / fps if fps else 0.0
        return VideoInfo(str(path), s.codec_context.width, s.codec_context.height, fps, int(n), dur, s.codec_context.name)


def iter_frames(path: str | os.PathLike[str], start: int = 0, end: int | None = None,
                size: tuple[int, int] | None = None, threads: int = 1) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames ``[start, end)`` (frame indices in decode order), optionally resized to ``(w, h)``.

    A decode error part-way raises :class:`MediaError` naming the file and the frame.
    """
    import av

    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {path}", hint="the file is not a video")
        s = c.streams.video[0]
        s.thread_type = "AUTO" if threads > 1 else "SLICE"
        s.codec_context.thread_count = threads
        i = -1
        try:
            for frame in c.decode(s):
                i += 1
                if i < start:
                    continue
                if end is not None and i >= end:
                    return
                if size is not None:
                    yield frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                else:
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:  # type: ignore[attr-defined]
            raise MediaError(f"corrupt video {path} at frame {i + 1}: {e}", hint="re-download or remove it") from e


def read_frames(path: str | os.PathLike[str], start: int = 0, end: int | None = None,
                size: tuple[int, int] | None = None) -> np.ndarray:
    frames = list(iter_frames(path, start, end, size))
    if not frames:
        raise MediaError(f"no frames in {path}[{start}:{end}]", hint="check the range and the file")
    return np.stack(frames)


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float = 25.0, crf: int = 18,
                preset: str = "veryfast") -> int:
    """Write RGB uint8 frames (H, W, 3; even sizes) as H.264 yuv420p mp4, atomically. Returns the frame count."""
    import av

    n = 0
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as c:
            s = None
            for f in frames:
                if s is None:
                    h, w = f.shape[:2]
                    s = c.add_stream("libx264", rate=rate)
                    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
                    s.options = {"crf": str(crf), "preset": preset}
                    s.codec_context.thread_count = 1
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f, dtype=np.uint8), format="rgb24")
                for pkt in s.encode(vf):
                    c.mux(pkt)
                n += 1
            if s is None:
                raise MediaError(f"no frames to write to {path}")
            for pkt in s.encode():
                c.mux(pkt)
    return n


class VideoWriter:
    """Incremental H.264 writer with the same atomic guarantee as :func:`write_video` (commit on ``close``)."""

    def __init__(self, path: str | os.PathLike[str], fps: float = 25.0, crf: int = 18, preset: str = "veryfast") -> None:
        self.path = Path(path)
        self.fps, self.crf, self.preset = fps, crf, preset
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        import av

        self._c = av.open(str(self._tmp), mode="w", format="mp4")
        self._s = None
        self.n = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        if self._s is None:
            h, w = frame.shape[:2]
            self._s = self._c.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._s.width, self._s.height, self._s.pix_fmt = w, h, "yuv420p"
            self._s.options = {"crf": str(self.crf), "preset": self.preset}
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
        for pkt in self._s.encode(vf):
            self._c.mux(pkt)
        self.n += 1

    def close(self) -> None:
        if self._s is not None:
            for pkt in self._s.encode():
                self._c.mux(pkt)
        self._c.close()
        if self._s is None:
            self._ctx.__exit__(MediaError, MediaError(f"no frames written to {self.path}"), None)
            raise MediaError(f"no frames written to {self.path}")
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._c.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, et, ev, tb) -> None:  # noqa: ANN001
        if et is None:
            self.close()
        else:
            self.abort()
