"""``leaderboard rescore``: a published run scored on a later dataset version without training again.

A dataset version changes with anything in it: a new evaluation protocol changes the version but not what training
reads. A run whose committed checkpoint records the version of the data it was trained on (``train_data`` in the
checkpoint's sidecar, :func:`~toontalker_bench.data.version.train_data_version`) may be scored on a dataset whose
train split has that same version: the rescore makes a new run directory from the committed checkpoint and config,
evaluates it on the current dataset's pairs of the run's tasks with the current evaluation settings, and publishes
it as a new run. Its rows carry the original run's seed, steps, training seconds and device; their ``code_commit``
names the code that scored them (the training commit and the original run stay in the run's ``train.json``:
``train_code_commit``, ``rescored_from``, ``trained_on``). A run that learned nothing (0 steps: copy-source and
the like) needs no record.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .core.config import Params
from .core.errors import DatasetError, LeaderboardError
from .core.io import write_json
from .data.version import dataset_version, train_data_version
from .leaderboard.artifacts import checkpoint_path, checkpoint_record
from .leaderboard.verify import committed_checkpoint, row_of
from .runs import CONFIG_FILE, evaluate, new_run_id, plan_run, publish
from .train.trainer import FINAL_CHECKPOINT


def rescore(params: Params, run_id: str, benchmark: str | None = None) -> str:
    """Published run ``run_id`` scored on the current dataset and published as a new run; returns the new run id.
    A :class:`~toontalker_bench.core.errors.UserError` says why when the rows cannot be carried over."""
    benchmark = benchmark or params.run.benchmark
    folder = Path(params.run.leaderboard_dir)
    rows = row_of(folder, benchmark, run_id)
    first = next(iter(rows.values()))
    method, dataset = first["method"], Path(params.build.out_dir)
    if not (dataset / "clips.parquet").is_file():
        raise DatasetError(f"no built dataset at {dataset}", hint="build it first (`dvc repro`)")
    have = dataset_version(dataset)
    if have == first["dataset_version"]:
        raise LeaderboardError(f"run {run_id} was measured on this dataset version ({have}); nothing to rescore",
                               hint=f"`leaderboard verify {run_id}` re-checks its rows")
    steps = int(first.get("steps") or 0)
    trained_on = ""
    if steps > 0:
        trained_on = str(checkpoint_record(folder, method, run_id).get("train_data", ""))
        if not trained_on:
            raise LeaderboardError(f"run {run_id}'s checkpoint does not record the data it was trained on",
                                   hint=f"train it again: `toontalker-bench run --method {method}`")
        now = train_data_version(dataset)
        if now != trained_on:
            raise LeaderboardError(f"run {run_id} was trained on other data ({trained_on}); the train split of "
                                   f"{dataset} is {now}",
                                   hint=f"train it again: `toontalker-bench run --method {method}`")
    ckpt, _ = committed_checkpoint(folder, first, None)
    config = checkpoint_path(folder, method, run_id, ".yaml")
    if not config.is_file():
        raise LeaderboardError(f"run {run_id} has no {config.relative_to(folder)}",
                               hint="it was published before runs kept it: `leaderboard backfill RUN_DIR`")
    new_id = new_run_id()
    run_dir = Path(params.run.runs_dir) / method / new_id
    run_dir.mkdir(parents=True)
    shutil.copyfile(config, run_dir / CONFIG_FILE)
    shutil.copyfile(ckpt, run_dir / FINAL_CHECKPOINT)
    write_json(run_dir / "train.json", {
        "run_id": new_id, "profile": first["profile"], "steps": steps,
        "train_seconds": float(first.get("train_seconds") or 0.0), "device": first["device"],
        "train_code_commit": first["code_commit"], "rescored_from": run_id,
        "trained_on": first["dataset_version"], **({"train_data": trained_on} if trained_on else {})})
    plan = plan_run(params, method, tasks=list(rows), run_id=new_id, train=False, publish=True)
    evaluate(plan)
    publish(plan)
    return new_id
