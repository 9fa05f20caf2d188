"""Video writing: a disk-full error part-way leaves no file a rerun would trust; the bytes are reproducible."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toontalker_bench.video import VideoWriter, probe, read_frames, write_video


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
from toontalker_bench.video import VideoWriter, write_video

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
