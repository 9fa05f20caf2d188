"""A long source runs as chunks (``tubes.chunk_seconds``): the cuts and shots do not change, a chunk's end splits
tubes as a cut does, and the outputs do not depend on how many workers ran the chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toontalker_bench.core.config import Params
from toontalker_bench.core.executors import LocalExecutor
from toontalker_bench.core.io import write_table
from toontalker_bench.core.video import write_video
from toontalker_bench.data.tubes import plan, stage

N, FPS, CUTS = 300, 25.0, (110, 215)


def _video(path: Path) -> None:
    """The astronaut photo drifting right over a background that changes at every cut (hard cuts at ``CUTS``)."""
    import cv2
    from skimage import data

    face = cv2.resize(data.astronaut()[20:300, 110:390], (200, 200), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(3)
    frames = []
    for i in range(N):
        if i in (0, *CUTS):
            tile = rng.integers(0, 255, (360 // 16 + 1, 640 // 16 + 1, 3), dtype=np.uint8)
            bg = cv2.resize(tile, (640, 360), interpolation=cv2.INTER_NEAREST)
        f = bg.copy()
        x = 150 + i // 6
        f[80:280, x:x + 200] = face
        frames.append(f)
    write_video(path, frames, fps=FPS)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from toontalker_bench.data.scrape import TABLE_COLUMNS

    root = tmp_path_factory.mktemp("chunks") / "raw"
    _video(root / "long.mp4")
    row = {c: "" for c in TABLE_COLUMNS} | {"source_id": "long", "domain": "real", "identity": "astro",
                                            "status": "ok", "path": "long.mp4", "start": float("nan"),
                                            "end": float("nan"), "width": 640, "height": 360, "fps": FPS,
                                            "n_frames": N}
    write_table(root / "sources.parquet", pd.DataFrame([row], columns=list(TABLE_COLUMNS)))
    return root


def _params(raw: Path, out: Path, chunk_seconds: float) -> Params:
    p = Params(workers=1)
    p.scrape.out_dir, p.tubes.out_dir = str(raw), str(out)
    p.tubes.min_frames, p.tubes.chunk_seconds = 16, chunk_seconds
    p.tubes.landmarks_every, p.tubes.landmarks_between = 5, "flow"
    return p


def _tree(d: Path) -> dict[str, str]:
    return {f.relative_to(d).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.rglob("*"))
            if f.is_file()}


def test_chunk_spans() -> None:
    assert plan.chunk_spans(300, 25.0, 0) == [(0, None)]
    assert plan.chunk_spans(300, 25.0, 8.0) == [(0, None)]  # 300 frames <= 1.5 x 200
    assert plan.chunk_spans(300, 25.0, 3.2) == [(0, 80), (80, 160), (160, 240), (240, None)]
    assert plan.chunk_spans(330, 25.0, 4.0) == [(0, 100), (100, 200), (200, None)]  # 30 left: joins the last


def test_chunks_keep_the_cuts_split_tubes_at_their_ends_and_ignore_the_worker_count(raw: Path, tmp_path: Path) -> None:
    whole = stage.run(_params(raw, tmp_path / "whole", 0))
    one = stage.run(_params(raw, tmp_path / "one", 3.2), LocalExecutor(1))
    two = stage.run(_params(raw, tmp_path / "two", 3.2), LocalExecutor(2))
    assert (whole["jobs"], one["jobs"], two["jobs"]) == (1, 4, 4)
    cuts = pd.read_parquet(tmp_path / "whole" / "cuts.parquet")
    assert cuts[["start_frame", "end_frame"]].values.tolist() == [[0, 110], [110, 215], [215, 300]]
    assert pd.read_parquet(tmp_path / "one" / "cuts.parquet").equals(cuts)  # the finder warmed up before each chunk
    # every file, track arrays and resume records included, is the same with one worker and with two
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    t_whole = pd.read_parquet(tmp_path / "whole" / "tubes.parquet")
    t_one = pd.read_parquet(tmp_path / "one" / "tubes.parquet")
    assert t_whole[["tube_id", "start_frame", "end_frame"]].values.tolist() == [
        ["long-s000-t00", 0, 110], ["long-s001-t00", 110, 215], ["long-s002-t00", 215, 300]]
    # a chunk's end (80, 160, 240) ends a track like a cut: the shot's tubes are numbered on across chunks
    assert t_one[["tube_id", "shot", "start_frame", "end_frame"]].values.tolist() == [
        ["long-s000-t00", 0, 0, 80], ["long-s000-t01", 0, 80, 110], ["long-s001-t00", 1, 110, 160],
        ["long-s001-t01", 1, 160, 215], ["long-s002-t00", 2, 215, 240], ["long-s002-t01", 2, 240, 300]]
    boxes = {}
    for d in ("whole", "one"):
        for f in sorted((tmp_path / d / "tracks").glob("*.npz")):
            with np.load(f) as z:
                for fr, b in zip(z["frames"], z["boxes"]):
                    boxes.setdefault(d, {})[int(fr)] = b
    assert sorted(boxes["whole"]) == sorted(boxes["one"]) == list(range(N))
    diff = np.array([np.abs(boxes["whole"][f] - boxes["one"][f]).max() for f in range(N)])
    assert diff.max() < 6  # the same face, detected on other frames near the chunk ends
    assert one["frames_decoded"] == whole["frames_decoded"] == N
    assert one["frames_decoded_with_chunk_overlap"] > N  # each chunk's warm-up and look-ahead
