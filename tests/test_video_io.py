"""Video writing: a disk-full error part-way leaves no file a rerun would trust."""

from __future__ import annotations

import errno
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
