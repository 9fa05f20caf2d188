"""Video writing: a disk-full error part-way leaves no file a rerun would trust; the bytes are reproducible."""

from __future__ import annotations

import errno
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toontalker_bench.core.video import VideoWriter, probe, read_frames, write_video


def _frames(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        yield np.full((64, 64, 3), i * 20, np.uint8)


def test_round_trip(tmp_path: Path) -> None:
    assert write_video(tmp_path / "v.mp4", _frames(8)) == 8
    info = probe(tmp_path / "v.mp4")
    assert (info.width, info.height, info.n_frames) == (64, 64, 8)
    frames = read_frames(tmp_path / "v.mp4")
    assert abs(int(frames[5].mean()) - 100) <= 2


@pytest.mark.parametrize("writer", ["write_video", "VideoWriter"])
def test_enospc_mid_clip_leaves_nothing(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "clip.mp4"
    with pytest.raises(OSError) as e:
        if writer == "write_video":
            write_video(target, _frames(8, fail_at=5))
        else:
            with VideoWriter(target) as w:
                for f in _frames(8, fail_at=5):
                    w.write(f)
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # neither the clip nor a temporary


def test_enospc_keeps_the_previous_complete_clip(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    write_video(target, _frames(4))
    before = target.read_bytes()
    with pytest.raises(OSError):
        write_video(target, _frames(8, fail_at=3))
    assert target.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


# Encodes a slow zoom over a photo (the demo corpus' empty-shot content, on which x264's AVX-512 kernels were measured
# to read uninitialised heap memory) with both writers and prints the two files' sha256.
_ENCODE_SCRIPT = """
import hashlib, os, sys
import cv2, numpy as np
from skimage.data import coffee
from toontalker_bench.core.video import VideoWriter, write_video

if sys.argv[2] == "one-cpu":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
img = coffee()
ih, iw = img.shape[:2]
w, h, n = 320, 180, 16
f0, cx, cy = max(w / iw, h / ih), 0.504 * iw, 0.566 * ih
frames = []
for t in range(n):
    f = f0 * (1.05 + 0.15 * t / (n - 1))
    A = np.array([[f, 0, w / 2 - f * cx], [0, f, h / 2 - f * cy]], np.float32)
    frames.append(cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
out = sys.argv[1]
write_video(out + "/a.mp4", frames, crf=20)
with VideoWriter(out + "/b.mp4", crf=20) as wr:
    for fr in frames:
        wr.write(fr)
print(*(hashlib.sha256(open(f"{out}/{k}.mp4", "rb").read()).hexdigest() for k in "ab"))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_same_frames_give_the_same_bytes_in_any_process(tmp_path: Path) -> None:
    """Two fresh processes whose heaps hold different garbage (glibc MALLOC_PERTURB_) and that see different numbers
    of CPUs encode the same frames to byte-identical files (before pinning x264's kernels and thread count, the
    four files below had four different hashes on an AVX-512 machine)."""
    hashes = []
    for perturb, cpus in (("1", "all"), ("170", "one-cpu")):
        out = tmp_path / cpus
        out.mkdir()
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        res = subprocess.run([sys.executable, "-c", _ENCODE_SCRIPT, str(out), cpus], capture_output=True, text=True,
                             env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        hashes.append(res.stdout.split())
    assert hashes[0] == hashes[1]
    assert hashes[0][0] == hashes[0][1]  # write_video and VideoWriter write the same bytes
    assert read_frames(tmp_path / "all" / "a.mp4").shape == (16, 180, 320, 3)


def test_x264_runs_no_kernel_whose_result_depends_on_the_cpu_maker() -> None:
    """The macroblock tree's propagation kernel divides with RCPPS (an approximation each CPU maker implements its own
    way: the demo corpus encoded to different bytes on an AMD EPYC and an Intel Xeon); it must stay off, and the
    kernels stay pinned on x86."""
    from toontalker_bench.core.video import _X264_X86_ASM, _h264_options

    params = dict(kv.split("=", 1) for kv in _h264_options(18, "veryfast")["x264-params"].split(":"))
    assert params["mbtree"] == "0"
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert params["asm"] == _X264_X86_ASM and "AVX" not in params["asm"]


def _keyed(path: Path, n: int = 90, key_every: int = 30, size: tuple[int, int] = (160, 96)) -> np.ndarray:
    """A random-texture video with a key frame every ``key_every`` frames and B-frames between; its frames (RGB)."""
    import av

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (n, size[1], size[0], 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        st.options = {"x264-params": f"keyint={key_every}:min-keyint={key_every}:scenecut=0", "threads": "1"}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return frames


def test_decoding_from_a_key_frame_gives_the_frames_of_a_full_decode(tmp_path: Path) -> None:
    from toontalker_bench.core.video import decode, iter_frames, key_frames

    _keyed(tmp_path / "k.mp4")
    assert key_frames(tmp_path / "k.mp4") == [0, 30, 60]
    full = list(iter_frames(tmp_path / "k.mp4"))
    for start, end in ((0, 10), (29, 31), (30, 45), (47, 90), (61, None)):
        got = [(f.index, f.rgb()) for f in decode(tmp_path / "k.mp4", start, end)]
        assert [i for i, _ in got] == list(range(start, len(full) if end is None else end))
        assert all(np.array_equal(a, full[i]) for i, a in got)


def test_region_conversion_equals_the_whole_frames_pixels(tmp_path: Path) -> None:
    from toontalker_bench.core.video import decode

    _keyed(tmp_path / "k.mp4", n=3)
    rng = np.random.default_rng(2)
    for f in decode(tmp_path / "k.mp4"):
        full = f.av.to_ndarray(format="rgb24")
        for _ in range(50):
            x0, y0 = (int(v) for v in rng.integers(-20, [150, 90]))
            x1, y1 = x0 + int(rng.integers(1, 90)), y0 + int(rng.integers(1, 70))
            got = f.rgb_region(x0, y0, x1, y1)
            assert np.array_equal(got, full[max(0, y0):max(0, min(96, y1)), max(0, x0):max(0, min(160, x1))])
        assert f._rgb is None  # nothing converted the whole frame
        rgb = full.astype(np.float64)  # the luma plane is BT.601 limited-range Y of those pixels
        y = 16 + (65.738 * rgb[..., 0] + 129.057 * rgb[..., 1] + 25.064 * rgb[..., 2]) / 256
        assert f.luma().shape == (96, 160) and np.median(np.abs(f.luma() - y)) <= 2.0  # rounding, clipping


def test_a_sample_clip_is_a_full_size_mp4_and_a_small_looping_webp(tmp_path: Path) -> None:
    from PIL import Image

    from toontalker_bench.core.visual import SAMPLE_WIDTH, save_clip

    frames = np.stack([np.full((256, 192, 3), 30 * i, np.uint8) for i in range(6)])
    mp4, webp = save_clip(tmp_path / "self_real", frames, fps=12.5)
    assert (probe(mp4).width, probe(mp4).n_frames) == (192, 6) and webp.suffix == ".webp"
    with Image.open(webp) as im:
        assert im.format == "WEBP" and im.n_frames == 6 and im.info.get("loop") == 0
        im.load()
        assert im.size == (SAMPLE_WIDTH, round(256 * SAMPLE_WIDTH / 192)) and im.info["duration"] == 80
