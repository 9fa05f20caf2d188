"""Fault tolerance: SIGKILL in the middle of each data stage, rerun, the same bytes as an uninterrupted run.

A tiny copy of the real pipeline (the repository's dvc.yaml without its code dependencies, params.yaml shrunk to two
short 320x180 videos) runs once uninterrupted under `dvc repro`. Each case starts from a copy of that project as if
the stage under test (and, for the DVC cases, every later stage) had never run, starts `dvc repro` (or the stage's CLI
verb), SIGKILLs the whole process group (DVC, the stage's process and its worker pool) once the stage has written its
first file and before it has finished, reruns, and compares every file under the stage outputs with the reference by
sha256, byte for byte (every stage output, its report and resume records included; only the run reports beside
the outputs, data/reports/<stage>.json with timings and resumed counts, may differ).

`dvc repro` deletes a stage's outputs before it reruns it (no `persist`), so the DVC cases check that nothing else
(DVC's own state, files outside the outputs) carries the kill over; the CLI cases rerun the verb over what the kill
left behind and so exercise each stage's own resume.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from toontalker_bench.data.stages import STAGES as PIPELINE

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = tuple(st.name for st in PIPELINE[1:])  # synth makes the inputs; every stage after it is tested
TINY = {"workers": 2,
        "synth": {"cartoon_videos": 1, "real_videos": 1, "cartoon_identities": 2, "shots_per_video": 2,
                  "shot_seconds": [1.6, 1.8], "no_face_shot_prob": 0.0, "include_carphone": False,
                  "width": 320, "height": 180},
        "scrape": {"retries": 0},
        "tubes": {"min_frames": 32},
        "build": {"pairs_per_task": 2, "pair_frames": 16, "contact_sheet_clips": 2}}
RUN_REPORTS = "data/reports/"  # each stage's run facts (timings, work resumed): they differ from run to run
# The file a stage writes last: present means the stage finished, so a kill must land before it.
LAST_WRITTEN = {"scrape": "data/raw/report.json", "tubes": "data/tubes/report.json",
                "align": "data/clips/report.json", "build": "data/dataset/stats.json"}


def _dvc(root: Path, *args: str, heap: str = "170") -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=_env(heap), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"dvc {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _env(heap: str = "170") -> dict[str, str]:
    """The reference run and the reruns fill fresh heap memory with different bytes (glibc's MALLOC_PERTURB_), so
    output that depends on uninitialised memory (as libx264's AVX-512 kernels' did) shows up as a difference."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
            "MALLOC_PERTURB_": heap}


def _pipeline(params: dict) -> dict:
    """The repository's pipeline with its code dependencies dropped (the package is installed, not in the project)
    and its ``${section.key}`` paths filled in from ``params``, so the test can find every output."""
    def fill(text: str) -> str:
        return re.sub(r"\$\{([\w.]+)\}", lambda m: str(functools.reduce(dict.get, m.group(1).split("."), params)), text)

    spec = yaml.safe_load(fill((REPO / "dvc.yaml").read_text()))
    for stage in spec["stages"].values():
        stage["deps"] = [d for d in stage["deps"] if not str(d).startswith("toontalker_bench/")]
    return spec


def _outs(spec: dict, stage: str) -> list[str]:
    s = spec["stages"][stage]
    entries = s.get("outs", []) + s.get("metrics", []) + s.get("plots", [])
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def _downstream(stage: str) -> list[str]:
    order = ("synth",) + STAGES
    return list(order[order.index(stage):])


def _hashes(root: Path, spec: dict) -> dict[str, str]:
    """sha256 of every file under every stage output (directories walked, hidden files included), run reports aside."""
    out = {}
    for stage in spec["stages"]:
        for rel in _outs(spec, stage):
            p = root / rel
            files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
            for f in files:
                if not f.relative_to(root).as_posix().startswith(RUN_REPORTS):
                    out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _lock_outs(root: Path) -> dict[str, list[dict]]:
    """DVC's hashes of every stage's outputs, run reports aside: what decides whether a later stage must rerun."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {s: [o for o in v["outs"] if not o["path"].startswith(RUN_REPORTS)] for s, v in stages.items()}


def _init_project(root: Path) -> dict:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = {**base, **{k: {**base[k], **v} if isinstance(v, dict) else v for k, v in TINY.items()}}
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    spec = _pipeline(params)
    (root / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    check = root / params["build"]["corpus_check"]  # a dependency of build (the card quotes it for its own clips)
    check.parent.mkdir(parents=True)
    shutil.copyfile(REPO / params["build"]["corpus_check"], check)
    _dvc(root, "init", "--no-scm", "-q")
    shutil.copyfile(REPO / ".dvcignore", root / ".dvcignore")  # resume records stay out of the hashes
    config = "[core]\n    no_scm = True\n    analytics = false\n    check_update = false\n"
    (root / ".dvc" / "config").write_text(config)
    return spec


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, str]]:
    root = tmp_path_factory.mktemp("fault") / "reference"
    spec = _init_project(root)
    _dvc(root, "repro", heap="1")
    clips = pd.read_parquet(root / "data" / "dataset" / "clips.parquet")
    assert len(clips) >= 4 and set(clips.domain) == {"real", "cartoon"}  # every stage had real work to do
    return root, spec, _hashes(root, spec)


def _kill_mid_stage(root: Path, stage: str, spec: dict, cmd: list[str]) -> None:
    """Start ``cmd``; SIGKILL its whole process group once ``stage`` has written a file and before it has finished."""
    first_out = root / _outs(spec, stage)[0]
    watch = first_out if stage != "build" else first_out.parent  # build's first output is one file in data/dataset
    proc = subprocess.Popen(cmd, cwd=root, env=_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0, seen = time.monotonic(), False
    try:
        while proc.poll() is None and time.monotonic() - t0 < 240:
            if watch.is_dir() and any(f.is_file() for f in watch.rglob("*")):
                seen = True
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert seen, f"{cmd[-1]} ended (rc {proc.returncode}) before {stage} wrote a file"
    assert proc.returncode == -signal.SIGKILL
    assert not (root / LAST_WRITTEN[stage]).exists(), f"the kill landed after {stage} finished"
    _wait_group_gone(proc.pid)


def _wait_group_gone(pgid: int) -> None:
    """Workers of the killed group may take a moment to be reaped; none may survive to race the rerun."""
    for _ in range(500):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def _copy_without(ref_root: Path, root: Path, spec: dict, stages: list[str]) -> None:
    """Copy the finished reference project as if ``stages`` had never run: their outputs deleted, their dvc.lock
    entries dropped, and no DVC run cache (which would restore their outputs instead of running them)."""
    shutil.copytree(ref_root, root, ignore=shutil.ignore_patterns("runs", "tmp"))  # .dvc/cache/runs, .dvc/tmp
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for s in stages:
        del lock["stages"][s]
        for rel in _outs(spec, s):
            p = root / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def _assert_same(got: dict[str, str], want: dict[str, str]) -> None:
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_kill_mid_stage_then_repro_gives_identical_outputs(reference: tuple[Path, dict, dict[str, str]],
                                                           stage: str, tmp_path: Path) -> None:
    """The issue's scenario: `dvc repro` killed inside ``stage``, then `dvc repro` again (DVC deletes the stage's
    outputs before it reruns it, so this checks that nothing outside them, and nothing in DVC's state, goes wrong)."""
    ref_root, spec, ref_hashes = reference
    root = tmp_path / "project"
    _copy_without(ref_root, root, spec, _downstream(stage))
    assert [ln for ln in _dvc(root, "status").stdout.splitlines() if ln.endswith(":") and not ln.startswith("\t")] \
        == [f"{s}:" for s in _downstream(stage)]  # `dvc repro` has this stage and every later one to run

    _kill_mid_stage(root, stage, spec, [str(BIN / "dvc"), "repro"])
    _dvc(root, "repro")

    _assert_same(_hashes(root, spec), ref_hashes)
    assert _lock_outs(root) == _lock_outs(ref_root)  # DVC's own hashes of every stage's outputs agree
    assert _dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES[:-1])
def test_forced_rerun_of_a_stage_leaves_later_stages_up_to_date(reference: tuple[Path, dict, dict[str, str]],
                                                                 stage: str, tmp_path: Path) -> None:
    """A stage rerun from scratch over the same inputs writes the same bytes, so DVC has nothing else to run."""
    ref_root, spec, ref_hashes = reference
    root = tmp_path / "project"
    shutil.copytree(ref_root, root, ignore=shutil.ignore_patterns("runs", "tmp"))
    _dvc(root, "repro", "--force", "--single-item", stage)
    assert _dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."
    _assert_same(_hashes(root, spec), ref_hashes)
    assert _lock_outs(root) == _lock_outs(ref_root)


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_kill_mid_stage_then_rerun_resumes_to_identical_outputs(reference: tuple[Path, dict, dict[str, str]],
                                                                stage: str, tmp_path: Path) -> None:
    """The stage's own resume: its CLI verb killed part-way, then run again over what the kill left behind."""
    ref_root, spec, ref_hashes = reference
    root = tmp_path / "project"
    _copy_without(ref_root, root, spec, [stage])
    cmd = [str(BIN / "toontalker-bench"), "data", stage]

    _kill_mid_stage(root, stage, spec, cmd)
    res = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    mine = {k for k in ref_hashes if any(k == o or k.startswith(o + "/") for o in _outs(spec, stage))}
    got = _hashes(root, spec)
    _assert_same({k: v for k, v in got.items() if k in mine}, {k: ref_hashes[k] for k in mine})
