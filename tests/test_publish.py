"""Leaderboard CSV: concurrent appends, re-publish replaces, schema validation, corrupt file left untouched."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
from pathlib import Path

import pytest

from toontalker_bench.cli import main
from toontalker_bench.core.errors import LeaderboardError
from toontalker_bench.leaderboard.render import render_markdown
from toontalker_bench.leaderboard.store import (
    ADDED_PROVENANCE,
    PROVENANCE,
    metric_directions,
    prune,
    publish_rows,
    read_leaderboard,
    read_rows,
    run_rows,
)


def row(run_id: str, method: str = "m", task: str = "self_real", l1: float | None = 0.1, psnr: float = 20.0) -> dict:
    r = {k: "" for k in PROVENANCE}
    r.update(run_id=run_id, method=method, profile="tiny", task=task, dataset_version="sha256:x", code_commit="abc",
             seed=0, steps=10, train_seconds=1.5, device="cpu", date="2026-01-01T00:00:00Z", size=64,
             l1=l1, l1_backend="numpy", psnr=psnr, psnr_backend="numpy")
    return r


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        publish_rows(path, [row(f"w{worker}-r{i}", method=f"m{worker}", l1=worker + i / 100)])


def test_eight_processes_append_fifty_rows_each(tmp_path: Path) -> None:
    path = tmp_path / "board.csv"
    metric_directions()  # import the metric registry once, before forking, not in each writer
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 50)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows, metrics = read_rows(path)
    assert len(rows) == 400 and metrics == {"l1", "psnr"}
    assert {r["run_id"] for r in rows} == {f"w{w}-r{i}" for w in range(8) for i in range(50)}
    with open(path, newline="") as f:  # plain csv module agrees
        assert sum(1 for _ in csv.DictReader(f)) == 400
    assert not list(tmp_path.glob(".board.csv.tmp-*"))


def test_republish_replaces_rows_of_that_run(tmp_path: Path) -> None:
    path = tmp_path / "board.csv"
    publish_rows(path, [row("a", task="self_real", l1=0.5), row("a", task="self_cartoon", l1=0.6)])
    publish_rows(path, [row("b", l1=0.2)])
    assert publish_rows(path, [row("a", task="self_real", l1=0.3)]) == 2
    df = read_leaderboard(path)
    assert sorted(df["run_id"]) == ["a", "b"]
    assert df.set_index("run_id").loc["a", "l1"] == pytest.approx(0.3)


def test_new_metric_columns_widen_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "board.csv"
    publish_rows(path, [row("a")])
    r = row("b", task="real2cartoon")
    r.update(fid=12.5, fid_backend="pt_inception-2015-12-05")
    publish_rows(path, [r])
    df = read_leaderboard(path).set_index("run_id")
    assert df.loc["b", "fid"] == 12.5 and df.loc["a", "fid"] != df.loc["a", "fid"]  # NaN for the older row
    with pytest.raises(LeaderboardError, match="unknown metric 'bogus'"):
        publish_rows(path, [{**row("c"), "bogus": 1.0, "bogus_backend": "x"}])


@pytest.mark.parametrize("corrupt, message", [
    ("garbage\n", "header lacks columns"),
    (None, "fields, expected"),
    ("psnr-not-a-number", "psnr must be a number"),
    ("bad-task", "unknown task 'nonsense'"),
])
def test_corrupt_csv_is_refused_and_left_untouched(tmp_path: Path, corrupt: str | None, message: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "leaderboard" / "demo.csv"
    publish_rows(path, [row("a")])
    text = path.read_text()
    if corrupt == "garbage\n":
        text = corrupt + text
    elif corrupt is None:
        text += "x,y\n"
    elif corrupt == "psnr-not-a-number":
        text = text.replace(",20.0,", ",twenty,")
    else:
        text = text.replace(",self_real,", ",nonsense,")
    path.write_text(text)
    before = path.read_bytes()
    with pytest.raises(LeaderboardError, match=message):
        publish_rows(path, [row("b")])
    # through the CLI: one line, exit 2, file unchanged
    run_dir = tmp_path / "runs" / "m" / "b"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"run_id": "b", "method": "m", "profile": "tiny", "code_commit": "0123456789ab"}')
    (run_dir / "metrics_detail.json").write_text('{"size": 64, "tasks": {"self_real": {"l1": {"value": 0.1}}}}')
    code = main(["--set", f"run.leaderboard_dir={path.parent}", "leaderboard", "publish", "--run", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 2 and message.split("'")[0] in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_bold_only_for_the_best_method_clear_of_copy_source_by_its_seed_spread(tmp_path: Path) -> None:
    """Bold needs a method (not a bracket), two or more seeds, a value with no mark, and a margin over copy-source's
    value larger than the method's seed-to-seed sd: alpha's l1 clears it (0.09 > 0.014), beta's psnr, the best,
    does not (3 < 5.7)."""
    path = tmp_path / "board.csv"
    runs = [("a0", "alpha", 0, 0.10, 25.0), ("a1", "alpha", 1, 0.12, 26.0), ("b0", "beta", 0, 0.28, 22.0),
            ("b1", "beta", 1, 0.32, 30.0)]
    publish_rows(path, [{**row(r, method=m, l1=l1, psnr=psnr), "seed": seed} for r, m, seed, l1, psnr in runs]
                 + [{**row("c", method="copy-source", l1=0.2, psnr=23.0), "bracket": "yes"},
                    {**row("o", method="oracle-driving", l1=0.0, psnr=100.0), "bracket": "yes"}])
    md = render_markdown(read_leaderboard(path), "demo")
    assert "| method | profile | n | l1 ↓ | psnr ↑ |" in md
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "**0.11 ± 0.014**" in lines["alpha"]
    assert "**" not in lines["beta"] and "**" not in lines["*oracle-driving (bracket)*"]
    assert "**" not in lines["*copy-source (bracket)*"]

    publish_rows(path, [{**row("a1", method="alpha", l1=0.12, psnr=26.0), "seed": 1,
                         "l1_note": "not validated on this data: pose MAE 4.0 deg > 3 on real"}])
    marked = render_markdown(read_leaderboard(path), "demo")
    assert "**" not in marked.split("## self_real")[1]  # a value with a mark is never bold
    df = read_leaderboard(path)
    single = render_markdown(df[df["seed"] == 0], "demo")
    assert "**" not in single.split("## self_real")[1]  # one seed: no spread to beat, nothing bold
    no_copy = render_markdown(df[(df["method"] != "copy-source") & (df["run_id"] != "a1")], "demo")
    assert "**" not in no_copy.split("## self_real")[1]


def test_rows_are_summarised_over_seeds_with_their_spread_and_notes(tmp_path: Path) -> None:
    """Two seeds of one method: mean ± sd with n = 2; the newest run of a seed replaces its older one; a value
    that is not validated carries a mark and its note is listed."""
    path = tmp_path / "board.csv"
    publish_rows(path, [{**row("s0-old", l1=0.9), "seed": 0, "date": "2026-01-01T00:00:00Z"},
                        {**row("s0", l1=0.2), "seed": 0, "date": "2026-01-02T00:00:00Z"},
                        {**row("s1", l1=0.4), "seed": 1, "date": "2026-01-03T00:00:00Z",
                         "l1_note": "not validated on this data: pose MAE 4.0 deg > 3 on real"}])
    md = render_markdown(read_leaderboard(path), "demo")
    line = next(ln for ln in md.splitlines() if ln.startswith("| m |"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[3] == "2" and cells[4] == "0.3 ± 0.14†"
    assert "- `l1`†: not validated on this data: pose MAE 4.0 deg > 3 on real" in md


def test_a_longer_training_budget_is_its_own_row_not_a_newer_seed(tmp_path: Path) -> None:
    from toontalker_bench.leaderboard.render import summarise

    path = tmp_path / "board.csv"
    publish_rows(path, [{**row("short", l1=0.5), "steps": 10, "date": "2026-01-01T00:00:00Z"},
                        {**row("long", l1=0.2), "steps": 20, "date": "2026-01-02T00:00:00Z"}])
    df = summarise(read_leaderboard(path)).set_index("steps")
    assert sorted(df.index) == [10, 20] and list(df["n_seeds"]) == [1, 1]
    assert df.loc[10, "l1"] == pytest.approx(0.5) and df.loc[20, "l1"] == pytest.approx(0.2)
    md = render_markdown(read_leaderboard(path), "demo")
    assert "| m (10 steps) | tiny | 1 |" in md and "| m (20 steps) | tiny | 1 |" in md


def test_dataset_version_from_dvc_lock_or_content(tmp_path: Path) -> None:
    import hashlib

    from toontalker_bench.data.version import dataset_version

    ds = tmp_path / "data" / "dataset"
    (ds / "protocol").mkdir(parents=True)
    (ds / "clips.parquet").write_bytes(b"clips")
    (ds / "protocol" / "pairs.parquet").write_bytes(b"pairs")
    content = "sha256:" + hashlib.sha256(b"clips" + b"pairs").hexdigest()[:16]
    assert dataset_version(ds, tmp_path / "no.lock") == content
    lock = tmp_path / "dvc.lock"
    lock.write_text(f"schema: '2.0'\nstages:\n  build:\n    outs:\n    - path: {ds}\n      md5: abc123.dir\n")
    assert dataset_version(ds, lock) == "dvc:abc123.dir"
    lock.write_text(f"stages:\n  build:\n    outs:\n    - path: {ds}/clips\n      md5: d1.dir\n"
                    f"    - path: {ds}/clips.parquet\n      md5: m2\n    - path: {ds}x\n      md5: other\n")
    v = dataset_version(ds, lock)
    assert v.startswith("dvc:") and v != dataset_version(ds, tmp_path / "no.lock")
    lock.write_text(lock.read_text().replace("m2", "m3"))
    assert dataset_version(ds, lock) != v


def test_dataset_version_does_not_depend_on_the_working_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from toontalker_bench.data.version import dataset_version

    project = tmp_path / "project"
    ds = project / "data" / "dataset"
    ds.mkdir(parents=True)
    (project / "dvc.lock").write_text("stages:\n  build:\n    outs:\n    - path: data/dataset\n      md5: abc.dir\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "dvc.lock").write_text("stages: {}\n")  # another project's lock in the working directory
    for cwd, path in ((project, "data/dataset"), (elsewhere, str(ds)), (project, str(ds) + "/")):
        monkeypatch.chdir(cwd)
        assert dataset_version(path) == "dvc:abc.dir"


def test_file_without_pose_labels_reads_and_gains_the_column(tmp_path: Path) -> None:
    """A leaderboard written before `pose_labels` (and the later provenance and note columns) existed still reads,
    with the defaults of older rows; the next publish adds the columns."""
    path = tmp_path / "board.csv"
    old = [c for c in PROVENANCE if c not in ADDED_PROVENANCE]
    header = old + ["l1", "l1_backend"]
    values = {**row("old"), "l1": "0.2"}
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, [values[c] for c in header]])
    rows, _ = read_rows(path)
    assert rows[0]["pose_labels"] == "" and rows[0]["l1"] == "0.2" and rows[0]["l1_note"] == ""
    assert rows[0]["protocol_version"] == "1" and rows[0]["analysis_size"] == "0"
    publish_rows(path, [{**row("new", method="animeceleb"), "pose_labels": "pseudo"}])
    with open(path, newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["pose_labels"] for r in written] == ["", "pseudo"]
    assert "animeceleb (pseudo pose labels)" in render_markdown(read_leaderboard(path), "demo")


def test_prune_keeps_one_dataset_version_and_its_gifs(tmp_path: Path) -> None:
    board = tmp_path / "leaderboard"
    (board / "samples").mkdir(parents=True)
    for name in ("old.gif", "new.gif", "orphan.gif"):
        (board / "samples" / name).write_bytes(b"GIF89a")
    publish_rows(board / "demo.csv", [{**row("old"), "dataset_version": "dvc:aaa", "sample_gif": "samples/old.gif"},
                                      {**row("new"), "dataset_version": "dvc:bbb", "sample_gif": "samples/new.gif"}])
    assert prune(board, "demo", "dvc:bbb") == (1, 2)
    rows, _ = read_rows(board / "demo.csv")
    assert [r["run_id"] for r in rows] == ["new"]
    assert sorted(p.name for p in (board / "samples").iterdir()) == ["new.gif"]
    assert prune(board, "demo", "dvc:bbb") == (0, 0)


def test_only_the_newest_run_per_method_and_task_keeps_its_sample(tmp_path: Path) -> None:
    board = tmp_path / "leaderboard"
    (board / "samples").mkdir(parents=True)
    runs = [("a", "2026-01-01", "fomm", ""), ("b", "2026-01-02", "fomm", ""), ("c", "2026-01-01", "toontalker", ""),
            ("quick", "2026-01-03", "fomm", "max_pairs=4,max_frames=0")]  # a quick run keeps the whole run's sample
    for run_id, *_ in runs:
        (board / "samples" / f"{run_id}.gif").write_bytes(b"GIF89a")
    publish_rows(board / "demo.csv", [{**row(run_id, method=m), "date": d, "sample_gif": f"samples/{run_id}.gif",
                                       "protocol_subset": sub} for run_id, d, m, sub in runs])
    assert prune(board, "demo", None) == (0, 1)
    rows, _ = read_rows(board / "demo.csv")
    assert {r["run_id"]: r["sample_gif"] for r in rows} == {"a": "", "b": "samples/b.gif", "c": "samples/c.gif",
                                                           "quick": "samples/quick.gif"}
    assert sorted(p.name for p in (board / "samples").iterdir()) == ["b.gif", "c.gif", "quick.gif"]


def test_show_keeps_quick_runs_apart(tmp_path: Path) -> None:
    """A quick run (``protocol_subset``, as ``make demo``'s) never mixes into the whole-protocol view; ``--quick``
    shows it on its own."""
    from toontalker_bench.leaderboard.render import show

    path = tmp_path / "demo.csv"
    publish_rows(path, [{**row("quick", method="m", l1=0.9), "protocol_subset": "4 pairs per task"}])
    assert show(tmp_path, "demo") == f"no whole-protocol runs published to {path} yet"
    quick = show(tmp_path, "demo", quick=True)
    assert "== self_real" in quick and "0.9" in quick
    publish_rows(path, [row("whole", method="w", l1=0.2)])
    whole = show(tmp_path, "demo")
    assert "0.2" in whole and "0.9" not in whole
    assert "0.9" in show(tmp_path, "demo", quick=True) and "0.2" not in show(tmp_path, "demo", quick=True)


def test_a_run_publishes_its_follow_shares_and_webp_sample(tmp_path: Path) -> None:
    """The relative motion metrics' ``follow`` lands in ``pose_follow`` / ``exp_follow`` with that metric's backend
    and note; the run's WebP sample is copied (a run from before WebP samples keeps its GIF)."""
    run_dir = tmp_path / "runs" / "m" / "r1"
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": "r1", "method": "m", "profile": "tiny", "seed": 0,
                                                 "steps": 5, "code_commit": "abc", "dataset_version": "dvc:x"}))
    apd = {"value": 2.0, "backend": "corpus-ridge", "n": 10, "extra": {"follow": 0.25, "change_ratio": 0.5}}
    aed = {"value": 0.1, "backend": "corpus-ridge", "n": 10,
           "extra": {"follow": 0.5, "validation": "not validated on this data: probe r 0.3 < 0.6 on real"}}
    detail = {"size": 64, "tasks": {"self_real": {"apd_rel_deg": apd, "aed_exp_rel": aed},
                                    "self_cartoon": {"l1": {"value": 0.1, "backend": "numpy"}}}}
    (run_dir / "metrics_detail.json").write_text(json.dumps(detail))
    (run_dir / "samples" / "self_real.webp").write_bytes(b"RIFF")
    (run_dir / "samples" / "self_cartoon.gif").write_bytes(b"GIF89a")
    board = tmp_path / "leaderboard"
    rows = {r["task"]: r for r in run_rows(run_dir, board)}
    real = rows["self_real"]
    assert real["pose_follow"] == 0.25 and real["exp_follow"] == 0.5 and real["pose_follow_backend"] == "corpus-ridge"
    assert real["pose_follow_note"] == "" and real["exp_follow_note"].startswith("not validated")
    assert "pose_follow" not in rows["self_cartoon"]
    assert real["sample_gif"] == "samples/m-r1-self_real.webp"
    assert rows["self_cartoon"]["sample_gif"] == "samples/m-r1-self_cartoon.gif"
    assert (board / real["sample_gif"]).read_bytes() == b"RIFF"
    publish_rows(board / "demo.csv", list(rows.values()))
    df = read_leaderboard(board / "demo.csv").set_index("task")
    assert df.loc["self_real", "pose_follow"] == 0.25 and math.isnan(df.loc["self_cartoon", "pose_follow"])
    md = render_markdown(read_leaderboard(board / "demo.csv"), "demo")
    assert "| method | profile | n | apd_rel_deg ↓ | aed_exp_rel ↓ | pose_follow →1 | exp_follow →1 |" in md
    assert "- `exp_follow`†: not validated on this data" in md


def test_prune_drops_the_samples_of_rows_the_board_does_not_show(tmp_path: Path) -> None:
    """Rows of an older dataset version stay in the CSV, named under the board's heading, but lose their samples;
    the current version's newest run keeps its own (WebP or GIF)."""
    board = tmp_path / "leaderboard"
    (board / "samples").mkdir(parents=True)
    for name in ("old.gif", "new.webp", "orphan.webp"):
        (board / "samples" / name).write_bytes(b"x")
    publish_rows(board / "demo.csv", [
        {**row("old", method="fomm"), "dataset_version": "dvc:aaa", "sample_gif": "samples/old.gif"},
        {**row("new"), "dataset_version": "dvc:bbb", "date": "2026-01-02T00:00:00Z", "sample_gif": "samples/new.webp"}])
    assert prune(board, "demo", None) == (0, 2)
    rows, _ = read_rows(board / "demo.csv")
    assert {r["run_id"]: r["sample_gif"] for r in rows} == {"old": "", "new": "samples/new.webp"}
    assert sorted(p.name for p in (board / "samples").iterdir()) == ["new.webp"]
    md = render_markdown(read_leaderboard(board / "demo.csv"), "demo")
    assert "- dataset `dvc:aaa`, protocol version 1: learned rows fomm tiny, 10 steps (1 seed)" in md


def test_kid_notes_differing_only_in_their_spread_share_one_line(tmp_path: Path) -> None:
    path = tmp_path / "board.csv"
    note = "only 600 frames per side (< 2048): unreliable; std {} over subsets"
    publish_rows(path, [{**row(r, method=r, task="real2cartoon", l1=None), "kid": 0.01 * i, "kid_backend": "x",
                         "kid_note": note.format(0.001 * i)} for i, r in enumerate(("a", "b", "c"), start=1)])
    # two seeds of one method: their notes merge part by part, the shared part once
    publish_rows(path, [{**row(f"d{i}", method="d", task="real2cartoon", l1=None), "seed": i, "kid": 0.02,
                         "kid_backend": "x", "kid_note": note.format(0.002 + 0.001 * i)} for i in (0, 1)])
    md = render_markdown(read_leaderboard(path), "demo")
    kid = [ln for ln in md.splitlines() if ln.startswith("- `kid`")]
    assert kid == ["- `kid`‡: only 600 frames per side (< 2048): unreliable; each value's std over its subsets is in "
                   "`demo.csv`"]
