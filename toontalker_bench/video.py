"""Video I/O through PyAV: probing, frame iteration, H.264 writing. No system ffmpeg needed."""

from __future__ import annotations

import os
import platform
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


# x264's x86 kernels pinned to x86-64-v2 (SSE4.2). Its AVX-512 kernels read uninitialised heap memory with
# macroblock-tree rate control and B-frames on (measured with x264 core 165: the same frames encode to different bytes
# in different processes; pinning MALLOC_PERTURB_ makes them repeat), and the float kernels differ between instruction
# sets, so the bytes would also depend on the CPU. On this pinned set the output is identical to the AVX2 set's and it
# is available on every x86-64 CPU since 2008 (Nehalem, Bulldozer). Other architectures keep x264's own detection.
_X264_X86_ASM = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2"


def _h264_options(crf: int, preset: str) -> dict[str, str]:
    """libx264 options whose output bytes depend only on the frames and these settings.

    One thread (x264's output depends on its thread count, which defaults to the number of cores) and pinned CPU
    kernels on x86 (see ``_X264_X86_ASM``).
    """
    opts = {"crf": str(crf), "preset": preset, "threads": "1"}
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        opts["x264-params"] = f"asm={_X264_X86_ASM}"
    return opts


def _h264_stream(container, width: int, height: int, fps: float, crf: int, preset: str):  # noqa: ANN001, ANN202
    """Add a deterministic H.264 yuv420p stream to an open PyAV output container."""
    s = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    s.options = _h264_options(crf, preset)
    s.codec_context.thread_count = 1
    return s


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float = 25.0, crf: int = 18,
                preset: str = "veryfast") -> int:
    """Write RGB uint8 frames (H, W, 3; even sizes) as H.264 yuv420p mp4, atomically. Returns the frame count.

    The file's bytes depend only on the frames and the arguments (same sha256 in any process on one machine).
    """
    import av

    n = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as c:
            s = None
            for f in frames:
                if s is None:
                    s = _h264_stream(c, f.shape[1], f.shape[0], fps, crf, preset)
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
    """Incremental H.264 writer with the same atomic and byte-determinism guarantees as :func:`write_video`."""

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
            self._s = _h264_stream(self._c, frame.shape[1], frame.shape[0], self.fps, self.crf, self.preset)
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
