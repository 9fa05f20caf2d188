"""Executors: per-item failures are recorded, and Dask distributed gives the same stage tables as the local pool."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers_media import truncate, write_multishot

from toontalker_bench.config import Params, ScrapeParams, ShotsParams
from toontalker_bench.data import shots
from toontalker_bench.data.scrape import TABLE_COLUMNS as SOURCE_COLUMNS
from toontalker_bench.executors import DaskExecutor, Failure, LocalExecutor
from toontalker_bench.io import write_table


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
    rows = [{c: "" for c in SOURCE_COLUMNS} | {"source_id": sid, "domain": "real", "status": "ok",
                                               "path": f"{sid}.mp4", "start": float("nan"), "end": float("nan"),
                                               "width": 0, "height": 0, "fps": 25.0, "n_frames": 0}
            for sid in ("a", "b", "bad")]
    write_table(raw / "sources.parquet", pd.DataFrame(rows))
    return raw


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_shot_table(tmp_path: Path) -> None:
    raw = _raw(tmp_path)

    def params(out: str) -> Params:
        return Params(workers=2, scrape=ScrapeParams(out_dir=str(raw)), shots=ShotsParams(out_dir=str(tmp_path / out)))

    local = shots.run(params("local"), LocalExecutor(2))
    with DaskExecutor(None, workers=2) as ex:  # LocalCluster bound to 127.0.0.1
        dask = shots.run(params("dask"), ex)
    a = pd.read_parquet(tmp_path / "local" / "shots.parquet")
    b = pd.read_parquet(tmp_path / "dask" / "shots.parquet")
    assert len(a) == 5 and a.equals(b)
    assert local["failed"] == dask["failed"] == 1  # the truncated video is recorded, not fatal
    assert [f["source_id"] for f in dask["failures"]] == ["bad"]
