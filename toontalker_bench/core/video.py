"""Video I/O through PyAV: probing, frame iteration, H.264 writing. No system ffmpeg needed."""

from __future__ import annotations

import functools
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


class DecodedFrame:
    """One decoded frame (``index`` in presentation order) whose pixels are converted only as far as asked.

    :meth:`rgb` converts the whole frame once (and keeps it); :meth:`rgb_region` converts only a rectangle, with the
    same values as ``rgb()[y0:y1, x0:x1]`` (yuv420p is converted from an even-aligned crop of its planes, which
    libswscale maps pixel for pixel like the whole frame: checked once per pixel format and colour space, else the
    whole frame is converted); :meth:`luma` is the Y plane as it was decoded, no conversion at all.
    """

    __slots__ = ("_av", "_rgb", "index", "rate")

    def __init__(self, index: int, frame, rate: float = 0.0) -> None:  # noqa: ANN001 - av.VideoFrame
        self.index = index
        self._av = frame
        self._rgb: np.ndarray | None = None
        self.rate = rate  # the stream's frame rate (frames/s)

    @property
    def av(self):  # noqa: ANN201 - av.VideoFrame
        return self._av

    @property
    def width(self) -> int:
        return self._av.width

    @property
    def height(self) -> int:
        return self._av.height

    @property
    def is_yuv420p(self) -> bool:
        return self._av.format.name == "yuv420p"

    def plane(self, i: int, rows: int, cols: int) -> np.ndarray:
        """Plane ``i`` of the decoded frame as a read-only ``(rows, cols)`` view (no copy)."""
        pl = self._av.planes[i]
        return np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[:rows, :cols]

    def rgb(self) -> np.ndarray:
        """The whole frame as ``(H, W, 3)`` RGB uint8 (converted once)."""
        if self._rgb is None:
            self._rgb = self._av.to_ndarray(format="rgb24")
        return self._rgb

    def luma(self) -> np.ndarray:
        """``(H, W)`` uint8 brightness: the Y plane of YUV frames as decoded, else the grey of :meth:`rgb`."""
        if self._av.format.name in _YUV_PLANAR:
            return self.plane(0, self.height, self.width)
        import cv2

        return cv2.cvtColor(self.rgb(), cv2.COLOR_RGB2GRAY)

    def rgb_region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """RGB of the rectangle ``[x0, x1) x [y0, y1)`` (clipped to the frame), equal to the whole frame's pixels."""
        w, h = self.width, self.height
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), np.uint8)
        if self._rgb is not None or not self.is_yuv420p or w % 2 or h % 2 or not _region_is_exact(self):
            return self.rgb()[y0:y1, x0:x1]
        ex0, ey0 = x0 // 2 * 2, y0 // 2 * 2
        ex1, ey1 = min(w, (x1 + 1) // 2 * 2), min(h, (y1 + 1) // 2 * 2)
        return _i420_rgb(self, ex0, ey0, ex1, ey1)[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0]


_YUV_PLANAR = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")
_EXACT: dict[tuple, bool] = {}  # (format, colour space, range, primaries, transfer) -> region conversion is exact


def _i420_rgb(f: DecodedFrame, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """RGB of an even-aligned rectangle of a yuv420p frame, converted by libswscale like the whole frame."""
    import av

    y = f.plane(0, f.height, f.width)[y0:y1, x0:x1]
    u = f.plane(1, f.height // 2, f.width // 2)[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    v = f.plane(2, f.height // 2, f.width // 2)[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape((y1 - y0) * 3 // 2, x1 - x0)
    crop = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    src = f.av
    for attr in ("colorspace", "color_range"):
        try:
            setattr(crop, attr, getattr(src, attr))
        except (AttributeError, TypeError, ValueError):
            pass
    return crop.to_ndarray(format="rgb24")


def _region_is_exact(f: DecodedFrame) -> bool:
    """Whether converting an even-aligned crop gives the whole frame's RGB values for frames like ``f`` (checked
    once per pixel format and colour tags, on ``f`` itself, over three rectangles including the frame's corners)."""
    src = f.av
    key = tuple(getattr(src, a, None) for a in ("colorspace", "color_range", "color_primaries", "color_trc"))
    key = (src.format.name, *map(str, key))
    if key not in _EXACT:
        full = src.to_ndarray(format="rgb24")
        w, h = f.width, f.height
        mid = (w // 4 // 2 * 2, h // 4 // 2 * 2, w // 2 // 2 * 2 + 2, h // 2 // 2 * 2 + 2)
        rects = [(0, 0, min(w, 64), min(h, 64)), mid, (max(0, w - 66), max(0, h - 66), w, h)]
        _EXACT[key] = all(np.array_equal(_i420_rgb(f, *r), full[r[1]:r[3], r[0]:r[2]]) for r in rects)
    return _EXACT[key]


@functools.lru_cache(maxsize=8)
def _frame_table(path: str, size: int, mtime_ns: int) -> tuple[dict[int, int], list[int], list[int]]:
    """From the packets alone (no decoding): pts -> frame index (presentation order), and the index and pts of every
    key frame. Empty when a packet has no pts or two share one (then only sequential decoding is exact)."""
    import av

    with _open(path) as c:
        s = c.streams.video[0]
        pts, keys = [], []
        try:
            for p in c.demux(s):
                if not p.size:
                    continue
                if p.pts is None:
                    return {}, [], []
                pts.append(int(p.pts))
                if p.is_keyframe:
                    keys.append(int(p.pts))
        except av.error.FFmpegError:  # type: ignore[attr-defined]
            return {}, [], []
    order = sorted(pts)
    index = {v: i for i, v in enumerate(order)}
    if len(index) != len(order):
        return {}, [], []
    key_pts = sorted(keys)
    return index, [index[k] for k in key_pts], key_pts


def key_frames(path: str | os.PathLike[str]) -> list[int]:
    """Indices of the key frames (where decoding can start), from the packets alone; ``[]`` when the timestamps
    cannot map packets to frames (then :func:`decode` counts from the first frame)."""
    st = os.stat(path)
    return list(_frame_table(str(path), st.st_size, st.st_mtime_ns)[1])


def decode(path: str | os.PathLike[str], start: int = 0, end: int | None = None, *, seek: bool = True
           ) -> Iterator[DecodedFrame]:
    """Yield :class:`DecodedFrame` ``[start, end)`` (presentation order), converting nothing until asked.

    With ``seek`` (default) and ``start`` past the first key frame, decoding starts at the last key frame at or before
    ``start`` and each frame's index comes from its timestamp (the packets' order, read without decoding); otherwise
    (or when the timestamps cannot say: missing or repeated) frames are counted from the first. Either way a frame
    gets the same index and pixels as when the whole video is decoded front to back. A decode error part-way raises
    :class:`MediaError` naming the file and the frame.
    """
    import av

    path = str(path)
    table: dict[int, int] = {}
    seek_pts = None
    if seek and start > 0:
        st = os.stat(path)
        table, key_index, key_pts = _frame_table(path, st.st_size, st.st_mtime_ns)
        usable = [k for k, i in enumerate(key_index) if i <= start]
        if table and usable and key_index[usable[-1]] > 0:
            seek_pts = key_pts[usable[-1]]
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {path}", hint="the file is not a video")
        s = c.streams.video[0]
        s.thread_type = "SLICE"
        s.codec_context.thread_count = 1
        rate = float(s.average_rate or s.guessed_rate or 25)
        i = -1
        try:
            if seek_pts is not None:
                c.seek(seek_pts, stream=s, backward=True, any_frame=False)
            for frame in c.decode(s):
                if seek_pts is not None:
                    if frame.pts is None or frame.pts not in table:
                        raise MediaError(f"frame without a known timestamp in {path} after seeking",
                                         hint="re-encode the video")
                    i = table[frame.pts]
                else:
                    i += 1
                if i < start:
                    continue
                if end is not None and i >= end:
                    return
                yield DecodedFrame(i, frame, rate)
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
# The macroblock tree is off: its propagation kernel (every x86 version) divides with RCPPS, whose approximate
# result is left to the CPU maker (an AMD EPYC and an Intel Xeon encoded the same frames to different bytes); it is
# the only such instruction in x264, so without it the bytes depend on the frames alone.
_X264_X86_ASM = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2"


def _h264_options(crf: int, preset: str) -> dict[str, str]:
    """libx264 options whose output bytes depend only on the frames and these settings.

    One thread (x264's output depends on its thread count, which defaults to the number of cores), pinned CPU
    kernels and no macroblock tree on x86 (see ``_X264_X86_ASM``).
    """
    params = "mbtree=0"
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        params += f":asm={_X264_X86_ASM}"
    return {"crf": str(crf), "preset": preset, "threads": "1", "x264-params": params}


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
