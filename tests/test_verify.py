"""Re-checking published rows: the per-pair values, config and checkpoint kept beside the board, `leaderboard
verify` agreeing with an honest row and catching a changed one, its one-line errors, half-precision checkpoints,
the checkpoint budget, backfill and prune."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_dataset import build_fixture_dataset, cli

from toontalker_bench.leaderboard import artifacts
from toontalker_bench.leaderboard.artifacts import half_precision
from toontalker_bench.leaderboard.store import publish_rows, read_rows

@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_dataset(tmp_path_factory.mktemp("ds"), size=64, n_frames=12, pairs_per_task=2,
                                 pair_frames=4)




def published_run(dataset: Path, work: Path, method: str = "copy-source", tasks: str = "self_real,real2cartoon") -> str:
    assert cli(dataset, "run", "--method", method, "--tasks", tasks) == 0
    return next((work / "runs" / method).iterdir()).name


def errors(capsys: pytest.CaptureFixture) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [ln for ln in err.splitlines() if not ln.startswith(("DEBUG ", "INFO ", "WARNING "))]


def test_publish_keeps_per_pair_values_config_and_checkpoint(dataset: Path, work: Path) -> None:
    run_id = published_run(dataset, work)
    board, run_dir = work / "leaderboard", work / "runs" / "copy-source" / run_id
    table = pd.read_parquet(board / "pairs" / f"copy-source-{run_id}.parquet")
    assert list(table.columns) == ["task", "pair_id", "metric", "value", "backend"]
    detail = json.loads((run_dir / "metrics_detail.json").read_text())["tasks"]
    assert table["value"].dtype == "float32"
    assert all(r.backend == detail[r.task][r.metric]["backend"] for r in table.itertuples())
    wide = pd.read_csv(run_dir / "pairs.csv")
    assert len(table) == 2 * 3 + 2 * 1  # self_real: l1, psnr, ssim; real2cartoon: l1; two pairs each
    for r in table.itertuples():
        want = wide[(wide.task == r.task) & (wide.pair_id == r.pair_id)][r.metric].item()
        assert r.value == pytest.approx(want, rel=1e-6)
    rows = read_rows(board / "demo.csv")[0]
    assert {r["checkpoint"] for r in rows} == {f"checkpoints/copy-source-{run_id}.safetensors"}
    record = json.loads((board / "checkpoints" / f"copy-source-{run_id}.json").read_text())
    assert record["lossless"] and record["bytes"] == (board / rows[0]["checkpoint"]).stat().st_size
    assert (board / "checkpoints" / f"copy-source-{run_id}.yaml").read_text() == (run_dir / "config.yaml").read_text()


def test_verify_agrees_with_the_row_and_catches_a_changed_value(dataset: Path, work: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    run_id = published_run(dataset, work)
    capsys.readouterr()
    assert cli(dataset, "leaderboard", "verify", run_id, "--max-pairs", "1") == 0
    out = capsys.readouterr().out
    lines = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("self_real", "real2cartoon"))]
    assert [(ln[0], ln[1], ln[2], ln[-1]) for ln in lines] == [
        ("self_real", "l1", "1", "yes"), ("self_real", "psnr", "1", "yes"), ("self_real", "ssim", "1", "yes"),
        ("real2cartoon", "l1", "1", "yes")]
    assert "4 of 4 recomputed values agree" in out and "per-pair table vs board" in out and "4 of 4 agree" in out
    assert cli(dataset, "leaderboard", "verify") == 0  # no run id: every run the board shows
    assert f"run {run_id} (copy-source)" in capsys.readouterr().out

    # the published value of the first pair changed: the re-computation disagrees, and so does the board's mean
    path = work / "leaderboard" / "pairs" / f"copy-source-{run_id}.parquet"
    table = pd.read_parquet(path)
    first = table[(table.task == "self_real") & (table.metric == "l1")].sort_values("pair_id").index[0]
    table.loc[first, "value"] *= 1.01
    table.to_parquet(path, index=False)
    assert cli(dataset, "leaderboard", "verify", run_id, "--tasks", "self_real") == 1
    out = capsys.readouterr().out
    assert any(ln.split()[:2] == ["self_real", "l1"] and "NO" in ln for ln in out.splitlines())
    assert "NO: self_real l1: board" in out and "VERIFICATION FAILED" in out


def test_verify_every_pair_rechecks_the_pooled_metrics(dataset: Path, work: Path, capsys: pytest.CaptureFixture,
                                                        prebuilt_asset: Callable[..., Path]) -> None:
    """FID/KID pool all of a row's pairs: skipped on a subset, compared with the row itself on every pair."""
    prebuilt_asset("fid-inception", Path(os.environ["TOONTALKER_HOME"]))
    assert cli(dataset, "run", "--method", "copy-source", "--tasks", "real2cartoon", "--set",
               "eval.cross_metrics=[l1,kid]", "--set", "eval.fid_min_frames=2") == 0
    run_id = next((work / "runs" / "copy-source").iterdir()).name
    capsys.readouterr()
    assert cli(dataset, "leaderboard", "verify", run_id, "--max-pairs", "1") == 0
    out = capsys.readouterr().out
    assert "skipped: kid" in out and "1 of 1 recomputed values agree" in out
    assert cli(dataset, "leaderboard", "verify", run_id, "--max-pairs", "0") == 0
    out = capsys.readouterr().out
    assert "skipped" not in out and "2 of 2 recomputed values agree" in out
    assert any(ln.split()[:3] == ["real2cartoon", "kid", "2"] for ln in out.splitlines())


def test_verify_a_float16_checkpoint(dataset: Path, work: Path, capsys: pytest.CaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint over FULL_PRECISION_BYTES is committed in float16, loads back in the method's own dtypes and is
    verified within the float16 tolerance."""
    monkeypatch.setattr(artifacts, "FULL_PRECISION_BYTES", 0)
    run_id = published_run(dataset, work, "mean-face", "self_real")
    capsys.readouterr()
    board = work / "leaderboard"
    record = json.loads((board / "checkpoints" / f"mean-face-{run_id}.json").read_text())
    assert record["dtype"] == "float16" and not record["lossless"]
    assert cli(dataset, "leaderboard", "verify", run_id) == 0
    out = capsys.readouterr().out
    assert "weights rounded to float16" in out and "float16 weights, a metric of the pixels" in out
    assert "3 of 3 recomputed values agree" in out


@pytest.mark.parametrize("case, message", [
    ("unknown run", "no row of run 'nope'"),
    ("unknown task", "has no row for task 'self_cartoon'"),
    ("checkpoint deleted", "is missing"),
    ("checkpoint changed", "does not match the sha256"),
    ("other dataset", "was measured on dataset"),
    ("no per-pair table", "has no pairs/"),
])
def test_verify_bad_input_is_one_line(dataset: Path, work: Path, capsys: pytest.CaptureFixture, tmp_path: Path,
                                      case: str, message: str) -> None:
    run_id = published_run(dataset, work, tasks="self_real")
    board = work / "leaderboard"
    args = ["leaderboard", "verify", run_id]
    ds = dataset
    if case == "unknown run":
        args[2] = "nope"
    elif case == "unknown task":
        args += ["--tasks", "self_cartoon"]
    elif case == "checkpoint deleted":
        (board / "checkpoints" / f"copy-source-{run_id}.safetensors").unlink()
    elif case == "checkpoint changed":
        (board / "checkpoints" / f"copy-source-{run_id}.safetensors").write_bytes(b"x")
    elif case == "other dataset":
        ds = build_fixture_dataset(tmp_path / "other", n_frames=8, pair_frames=4, train_clips=1, test_clips=1,
                                   pairs_per_task=1, seed=1)
    else:
        (board / "pairs" / f"copy-source-{run_id}.parquet").unlink()
    capsys.readouterr()
    assert cli(ds, *args) == 2
    lines = errors(capsys)
    assert lines[0].startswith("error: ") and message in lines[0], lines


def test_checkpoint_over_the_budget_is_not_committed(dataset: Path, work: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "CHECKPOINT_BUDGET_BYTES", 100)  # a copy-source checkpoint is 120 bytes
    run_id = published_run(dataset, work, tasks="self_real")
    board = work / "leaderboard"
    assert "over the 0.0001 MB budget; not committed" in capsys.readouterr().err
    assert not list((board / "checkpoints").glob("*.safetensors"))
    assert {r["checkpoint"] for r in read_rows(board / "demo.csv")[0]} == {""}
    capsys.readouterr()
    assert cli(dataset, "leaderboard", "verify", run_id) == 2
    lines = errors(capsys)
    assert "has no committed checkpoint" in lines[0] and "--checkpoint PATH" in lines[1]
    own = work / "runs" / "copy-source" / run_id / "checkpoint.safetensors"  # as if fetched from elsewhere
    assert cli(dataset, "leaderboard", "verify", run_id, "--checkpoint", str(own)) == 0
    assert "exact weights" in capsys.readouterr().out


def test_committed_checkpoints_are_the_same_bytes_for_the_same_weights() -> None:
    """safetensors writes its header in hash order (the same weights saved twice differ in bytes); the committed form
    sorts it, and loads to the same tensors and metadata."""
    from safetensors.torch import load, save

    weights = {"model.b": torch.randn(3, 4), "model.a": torch.arange(5), "model.c": torch.randn(2).half()}
    meta = {"method": "x", "step": "3", "config": "{}", "format": "toontalker-bench/1"}
    saved = [save(weights, metadata=meta) for _ in range(12)]
    committed = {artifacts.canonical_safetensors(d) for d in saved}
    assert len(committed) == 1
    data = committed.pop()
    assert all(torch.equal(load(data)[k], v) for k, v in weights.items())
    assert (8 + int.from_bytes(data[:8], "little")) % 8 == 0


def test_the_budget_counts_each_checkpoint_content_once(dataset: Path, work: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs with the same weights (a rescored run and its original) cost the repository one copy: the second is
    committed within a budget that holds one; different bytes are still refused."""
    monkeypatch.setattr(artifacts, "CHECKPOINT_BUDGET_BYTES", 200)  # a copy-source checkpoint is 120 bytes
    def another() -> str:
        runs = work / "runs" / "copy-source"
        before = set(runs.iterdir()) if runs.is_dir() else set()
        published_run(dataset, work, tasks="self_real")
        return (set(runs.iterdir()) - before).pop().name

    first, second = another(), another()
    board = work / "leaderboard"
    assert "not committed" not in capsys.readouterr().err
    assert {r["checkpoint"] for r in read_rows(board / "demo.csv")[0]} == {
        f"checkpoints/copy-source-{first}.safetensors", f"checkpoints/copy-source-{second}.safetensors"}
    (board / "checkpoints" / f"copy-source-{first}.safetensors").write_bytes(b"y" * 120)
    another()
    assert "over the 0.0002 MB budget; not committed" in capsys.readouterr().err


def test_backfill_then_prune(dataset: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    """A run published before the artifacts were kept gains them (and its checkpoint column, no other change);
    pruning its rows deletes them."""
    run_id = published_run(dataset, work, tasks="self_real")
    board = work / "leaderboard"
    for d in ("pairs", "checkpoints"):
        for p in (board / d).iterdir():
            p.unlink()
    rows = read_rows(board / "demo.csv")[0]
    publish_rows(board / "demo.csv", [{**r, "checkpoint": ""} for r in rows])
    capsys.readouterr()
    assert cli(dataset, "leaderboard", "verify", run_id) == 2
    assert "leaderboard backfill RUN_DIR" in capsys.readouterr().err
    assert cli(dataset, "leaderboard", "backfill", str(work / "runs" / "copy-source" / run_id)) == 0
    assert read_rows(board / "demo.csv")[0] == rows
    assert cli(dataset, "leaderboard", "verify", run_id) == 0
    assert cli(dataset, "leaderboard", "backfill", str(work / "runs")) == 2
    assert "run.json not found" in capsys.readouterr().err
    assert cli(dataset, "leaderboard", "prune", "--dataset-version", "sha256:other") == 0
    assert "and 4 per-pair tables and checkpoint files" in capsys.readouterr().out
    assert not [p for d in ("pairs", "checkpoints") for p in (board / d).iterdir()]


def test_rescore_carries_a_trained_run_to_a_new_protocol(dataset: Path, work: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A new evaluation protocol changes the dataset version but not the train split: a trained run's committed
    checkpoint is scored again and published as a new run carrying the original's seed, steps and device; other
    train data, the same version, or a checkpoint without a train-data record are refused in one line."""
    import shutil

    from toontalker_bench.data.protocol import make_pairs
    from toontalker_bench.data.version import dataset_version, train_data_version

    ds = Path(shutil.copytree(dataset, tmp_path / "ds"))
    run_id = published_run(ds, work, method="mean-face", tasks="self_real")
    board = work / "leaderboard"
    record = json.loads((board / "checkpoints" / f"mean-face-{run_id}.json").read_text())
    assert record["train_data"] == train_data_version(ds)
    old = read_rows(board / "demo.csv")[0][0]
    assert int(old["steps"]) > 0
    capsys.readouterr()
    assert cli(ds, "leaderboard", "rescore", run_id) == 2
    assert "nothing to rescore" in errors(capsys)[0]

    clips = pd.read_parquet(ds / "clips.parquet")
    pd.testing.assert_frame_equal(make_pairs(clips, 2, 4, 0), pd.read_parquet(ds / "protocol" / "pairs.parquet"))
    make_pairs(clips, 2, 4, 1).to_parquet(ds / "protocol" / "pairs.parquet")  # a new protocol, the same training data
    assert dataset_version(ds) != old["dataset_version"] and train_data_version(ds) == record["train_data"]
    assert cli(ds, "leaderboard", "rescore", run_id) == 0
    new_id = capsys.readouterr().out.split()[-1]
    new = [r for r in read_rows(board / "demo.csv")[0] if r["run_id"] == new_id]
    assert len(new) == 1 and new[0]["dataset_version"] == dataset_version(ds)
    assert {k: new[0][k] for k in ("method", "seed", "steps", "train_seconds", "device", "variant")} == \
        {k: old[k] for k in ("method", "seed", "steps", "train_seconds", "device", "variant")}
    train = json.loads((work / "runs" / "mean-face" / new_id / "train.json").read_text())
    assert train["rescored_from"] == run_id and train["trained_on"] == old["dataset_version"]
    assert json.loads((board / "checkpoints" / f"mean-face-{new_id}.json").read_text())["train_data"] == \
        record["train_data"]
    assert cli(ds, "leaderboard", "verify", new_id) == 0  # the new rows re-check from their own checkpoint

    npz = ds / "clips" / "real-train-00.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["motion"] = arrays["motion"] + 1.0
    np.savez(npz, **arrays)  # the training data changed
    capsys.readouterr()
    assert cli(ds, "leaderboard", "rescore", run_id) == 2
    err = errors(capsys)
    assert err[0].startswith("error: ") and "was trained on other data" in err[0] and err[1].startswith("hint: ")

    path = board / "checkpoints" / f"mean-face-{run_id}.json"
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "train_data"}))
    assert cli(ds, "leaderboard", "rescore", run_id) == 2
    assert "does not record the data it was trained on" in errors(capsys)[0]


def test_half_precision_keeps_integers_and_what_float16_cannot_hold() -> None:
    tensors = {"w": torch.tensor([0.1, 0.5]), "n": torch.tensor([3, 70000]),
               "big": torch.tensor([1e6], dtype=torch.float64), "exact": torch.tensor([0.5, 2.0])}
    out, lossless, kept = half_precision(tensors)
    assert out["w"].dtype == torch.float16 and out["exact"].dtype == torch.float16
    assert out["n"].dtype == torch.int64 and out["n"].tolist() == [3, 70000]
    assert kept == ["big"] and out["big"].dtype == torch.float32 and not lossless  # 0.1 is not a float16
    assert half_precision({"exact": tensors["exact"]})[1]


@pytest.mark.parametrize("method", ["copy-source", "mean-face", "fomm", "toontalker", "animeceleb"])
def test_every_method_loads_a_float16_checkpoint_in_its_own_dtypes(method: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from toontalker_bench.models.checkpoint import read_checkpoint, save_checkpoint
    from toontalker_bench.models.registry import build_method

    model = build_method(method, "tiny")
    save_checkpoint(tmp_path / "full.safetensors", model, 0, with_optimizer=False)
    tensors, meta = read_checkpoint(tmp_path / "full.safetensors")
    save_file(half_precision(tensors)[0], str(tmp_path / "half.safetensors"), metadata=meta)
    loaded = build_method(method, cfg=model.cfg, checkpoint=tmp_path / "half.safetensors").state_dict()
    for name, value in model.state_dict().items():
        assert loaded[name].dtype == value.dtype, name
        assert torch.allclose(loaded[name].double(), value.double(), rtol=1e-3, atol=1e-4), name
