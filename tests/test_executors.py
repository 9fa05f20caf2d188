"""Executors: per-item failures are recorded, and Dask distributed gives the same stage outputs as the local pool."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_media import truncate, write_multishot

from toontalker_bench.core.config import Params, ScrapeParams
from toontalker_bench.core.executors import DaskExecutor, Failure, LocalExecutor
from toontalker_bench.core.io import write_table
from toontalker_bench.core.video import write_video
from toontalker_bench.data import align, tubes
from toontalker_bench.data.scrape import TABLE_COLUMNS as SOURCE_COLUMNS


def _inverse(x: int) -> float:
    return 1 / x


@pytest.mark.parametrize("workers", [1, 2])
def test_one_failing_item_never_kills_the_batch(workers: int) -> None:
    out = list(LocalExecutor(workers).map(_inverse, [1, 0, 4]))
    assert [item for item, _ in out] == [1, 0, 4]
    assert out[0][1] == 1.0 and out[2][1] == 0.25
    assert isinstance(out[1][1], Failure) and "ZeroDivisionError" in out[1][1].reason


def _raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_multishot(raw / "a.mp4", (40, 30, 35), seed=11)
    write_multishot(raw / "b.mp4", (50, 45), seed=12)
    truncate(raw / "a.mp4", raw / "bad.mp4", 0.5)
    rows = [_source_row(sid, "real", w=0, h=0) for sid in ("a", "b", "bad")]
    write_table(raw / "sources.parquet", pd.DataFrame(rows))
    return raw


@pytest.fixture(scope="module")
def dask_ex() -> Iterator[DaskExecutor]:
    """One two-worker LocalCluster bound to 127.0.0.1, shared by the stage comparisons below."""
    with DaskExecutor(None, workers=2) as ex:
        yield ex


def _source_row(sid: str, domain: str, identity: str = "", w: int = 320, h: int = 180, n: int = 0) -> dict:
    return {c: "" for c in SOURCE_COLUMNS} | {"source_id": sid, "domain": domain, "identity": identity, "status": "ok",
                                              "path": f"{sid}.mp4", "start": float("nan"), "end": float("nan"),
                                              "width": w, "height": h, "fps": 25.0, "n_frames": n}


def _files(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d`` except the stage's report and resume records (the tests compare the reports
    each run returns)."""
    return {f.relative_to(d).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.rglob("*"))
            if f.is_file() and f.name != "report.json" and ".parts" not in f.parts}


def _local_and_dask(run, p: Params, stage: str, root: Path, dask_ex: DaskExecutor) -> tuple[dict, dict]:  # noqa: ANN001
    """Run a stage into ``root/local`` on the process pool, then into ``root/dask`` on the cluster; both reports."""
    reports = []
    for name, ex in (("local", LocalExecutor(2)), ("dask", dask_ex)):
        getattr(p, stage).out_dir = str(root / name)
        reports.append(run(p, ex))
    return reports[0], reports[1]


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_cut_list(tmp_path: Path, dask_ex: DaskExecutor) -> None:
    """The cuts come from the tubes stage's decoding pass, on either executor."""
    p = Params(workers=2, scrape=ScrapeParams(out_dir=str(_raw(tmp_path))))
    local, dask = _local_and_dask(tubes.run, p, "tubes", tmp_path, dask_ex)
    a = pd.read_parquet(tmp_path / "local" / "cuts.parquet")
    assert a.kept.sum() == 5 and a.equals(pd.read_parquet(tmp_path / "dask" / "cuts.parquet"))
    assert local["sources_failed"] == dask["sources_failed"] == 1  # the truncated video is recorded, not fatal
    rejects = pd.read_parquet(tmp_path / "dask" / "rejects.parquet")
    assert rejects[rejects.reason == "source_error"].source_id.tolist() == ["bad"]


def _tubes_params(root: Path) -> Params:
    """Two videos of a photographed face drifting across the frame (then leaving it), and a truncated third."""
    import cv2
    from skimage import data

    raw = root / "raw"
    face = cv2.resize(data.astronaut()[20:300, 110:390], (160, 160), interpolation=cv2.INTER_AREA)
    for k, sid in enumerate(("a", "b")):
        frames = []
        for i in range(60):
            f = np.full((180, 320, 3), 60 + 40 * k, np.uint8)
            if i < 48:
                x = 20 + 80 * k + i // 3
                f[10:170, x:x + 160] = face
            frames.append(f)
        write_video(raw / f"{sid}.mp4", frames)
    truncate(raw / "a.mp4", raw / "bad.mp4", 0.4)
    write_table(raw / "sources.parquet", pd.DataFrame([_source_row(s, d, f"id_{s}", n=60)
                                                       for s, d in (("a", "real"), ("b", "cartoon"), ("bad", "real"))]))
    p = Params(workers=2)
    p.scrape.out_dir = str(raw)
    p.tubes.min_frames = 32
    return p


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_face_tubes(tmp_path: Path, dask_ex: DaskExecutor) -> None:
    local, dask = _local_and_dask(tubes.run, _tubes_params(tmp_path), "tubes", tmp_path, dask_ex)
    table = pd.read_parquet(tmp_path / "local" / "tubes.parquet")
    assert sorted(table.source_id) == ["a", "b"] and (table.n_frames >= 40).all()  # each drifting face is one tube
    assert local["rejects"] == dask["rejects"] and local["tubes"] == dask["tubes"] == 2
    assert table.equals(pd.read_parquet(tmp_path / "dask" / "tubes.parquet"))
    rejects = pd.read_parquet(tmp_path / "local" / "rejects.parquet")
    assert "bad" in set(rejects.source_id)  # the truncated video is recorded, not fatal
    assert rejects.equals(pd.read_parquet(tmp_path / "dask" / "rejects.parquet"))
    assert _files(tmp_path / "local") == _files(tmp_path / "dask")  # the track files too, byte for byte


def _align_params(root: Path) -> Params:
    """Three videos of a bright disc moving on a grey background, with one face tube each that follows the disc."""
    raw, tracks = root / "raw", root / "tubes" / "tracks"
    tracks.mkdir(parents=True)
    yy, xx = np.mgrid[0:180, 0:320]
    rows = []
    for s in range(3):
        sid, n = f"src{s}", 40
        centres = np.stack([60 + 3 * np.arange(n) + 20 * s, 60 + np.arange(n)], 1).astype(float)
        write_video(raw / f"{sid}.mp4", [np.where((((xx - cx) ** 2 + (yy - cy) ** 2) <= 900)[..., None], 250, 90)
                                         .astype(np.uint8).repeat(3, 2) for cx, cy in centres])
        a, b = 4, n - 2
        boxes = np.concatenate([centres[a:b] - 30, centres[a:b] + 30], 1).astype(np.float32)
        lm68 = np.repeat(centres[a:b, None, :], 68, 1).astype(np.float32)
        np.savez(tracks / f"{sid}-s000-t00.npz", frames=np.arange(a, b), boxes=boxes, scores=np.ones(b - a, np.float32),
                 landmarks68=lm68, landmarks5=lm68[:, :5], detected=np.ones(b - a, bool), gt_box=boxes,
                 motion=np.zeros((b - a, 20), np.float32))
        rows.append(dict(tube_id=f"{sid}-s000-t00", source_id=sid, domain="real", identity=f"id{s}", shot=0,
                         start_frame=a, end_frame=b, n_frames=b - a, mean_score=1.0, median_face_px=60.0,
                         detector="test"))
    write_table(raw / "sources.parquet", pd.DataFrame([_source_row(f"src{s}", "real", f"id{s}", n=40)
                                                       for s in range(3)]))
    write_table(root / "tubes" / "tubes.parquet", pd.DataFrame(rows))
    p = Params(workers=2)
    p.scrape.out_dir, p.tubes.out_dir = str(raw), str(root / "tubes")
    p.align.size, p.align.box_mode = 64, "smooth"
    return p


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_clips(tmp_path: Path, dask_ex: DaskExecutor) -> None:
    local, dask = _local_and_dask(align.run, _align_params(tmp_path), "align", tmp_path, dask_ex)
    assert local["clips"] == dask["clips"] == 3
    clips = pd.read_parquet(tmp_path / "local" / "clips.parquet")
    assert clips.equals(pd.read_parquet(tmp_path / "dask" / "clips.parquet"))
    files = _files(tmp_path / "local")
    assert len(files) == 7 and files == _files(tmp_path / "dask")  # clips.parquet + an mp4 and an npz per clip
