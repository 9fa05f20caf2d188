"""``toontalker-bench run``: train (unless a checkpoint is given) -> evaluate -> ``runs/<method>/<run-id>/`` -> publish.

Everything a user can get wrong (method, profile, ``--set`` keys, tasks, the dataset and its protocol, the checkpoint
path, a corrupt leaderboard) is checked before any training starts. A run directory holds ``config.yaml`` (the
resolved profile and the params used), ``train.json`` (steps, seconds, device), ``checkpoint.safetensors``, the
evaluation outputs (see :mod:`toontalker_bench.eval.evaluator`) and ``run.json`` (provenance for the leaderboard).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Params, to_dict
from .errors import CheckpointError, ConfigError, DatasetError
from .data.dataset import check_tasks, clip_table, load_pairs
from .io import safe_name, write_json, write_text
from .domains import DOMAINS
from .models.base import Method
from .models.registry import load_profile, method_class

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    metrics: dict[str, dict[str, Any]]
    leaderboard: Path | None
    interrupted: bool = False


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def run_dir_for(params: Params, method: str, run_id: str) -> Path:
    if not safe_name(run_id):
        raise ConfigError(f"bad run id {run_id!r}", hint="use letters, digits, '.', '_' and '-' only")
    return Path(params.run.runs_dir) / method / run_id


def select_tasks(cls: type[Method], tasks: list[str] | tuple[str, ...]) -> list[str]:
    """Requested tasks, or every task the method can do; asking a self-only method for a cross task is an error."""
    chosen = check_tasks(list(tasks))
    cap = cls.capabilities
    if tasks:
        for t in chosen:
            if t.split("_")[0] != "self" and not cap.cross_domain:
                raise ConfigError(f"method {cls.name!r} cannot do cross-domain task {t!r}",
                                  hint="choose among self_real, self_cartoon")
        return chosen
    return [t for t in chosen if t.startswith("self_") or cap.cross_domain]


def _check_train_domains(dataset_dir: Path, cls: type[Method]) -> None:
    clips = clip_table(dataset_dir)
    have = set(clips.loc[clips["split"] == "train", "domain"])
    missing = [d for d in DOMAINS if d not in have]
    if missing and cls.capabilities.cross_domain:
        raise DatasetError(f"{dataset_dir} has no {', '.join(missing)} clips in its train split; "
                           f"{cls.name} trains on both domains", hint="add sources of that domain and rebuild")


def _device(params: Params) -> Any:
    from .device import resolve_device

    return resolve_device(params.run.device)


def resolve(params: Params, method: str, profile: str | None, overrides: list[str] | tuple[str, ...] = ()
            ) -> tuple[type[Method], dict[str, Any], str]:
    cls = method_class(method)
    profile = profile or params.run.profile
    cfg = load_profile(method, profile, [*params.run.overrides, *overrides])
    return cls, cfg, profile


def _save_config(run_dir: Path, method: str, profile: str, cfg: dict[str, Any], params: Params,
                 overrides: list[str] | tuple[str, ...]) -> None:
    doc = {"method": method, "profile": profile, "overrides": list(overrides), "config": cfg,
           "params": {"seed": params.seed, "dataset": params.build.out_dir, "eval": to_dict(params.eval),
                      "run": to_dict(params.run)}}
    write_text(run_dir / CONFIG_FILE, yaml.safe_dump(doc, sort_keys=False))


def _load_doc(run_dir: Path, method: str) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no run to resume at {run_dir}", hint="check --method and the run id (ls runs/<method>)")
    doc = yaml.safe_load(path.read_text())
    if doc.get("method") != method:
        raise ConfigError(f"run {run_dir} belongs to method {doc.get('method')!r}, not {method!r}")
    return doc


def _load_config(run_dir: Path, method: str) -> tuple[str, dict[str, Any]]:
    doc = _load_doc(run_dir, method)
    return doc["profile"], doc["config"]


def train_only(params: Params, method: str, profile: str | None = None, overrides: list[str] | tuple[str, ...] = (),
               run_id: str | None = None, resume: bool = False) -> tuple[Path, dict[str, Any]]:
    """Train into ``runs/<method>/<run_id>`` (a no-op checkpoint for parameter-free methods); returns the run dir
    and the training record (also written to ``train.json``)."""
    from .leaderboard.provenance import code_commit
    from .models.checkpoint import save_checkpoint
    from .train.data import TrainData
    from .train.trainer import FINAL_CHECKPOINT, train, train_config

    commit = code_commit()  # the code that trains, read before anything can change the tree
    cls, cfg, profile = resolve(params, method, profile, overrides)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not run_id:
        raise ConfigError("under torchrun every process needs the same run directory", hint="pass --run-id NAME")
    run_id = run_id or new_run_id()
    run_dir = run_dir_for(params, method, run_id)
    seed = params.seed
    if resume:  # the run's own config and seed, so the data order continues unchanged
        doc = _load_doc(run_dir, method)
        profile, cfg, seed = doc["profile"], doc["config"], int(doc["params"]["seed"])
    dataset = Path(params.build.out_dir)
    device = _device(params)
    model = cls(cfg)
    record: dict[str, Any] = {"run_id": run_id, "profile": profile, "steps": 0, "train_seconds": 0.0,
                              "device": _device_name(device), "world_size": 1, "interrupted": False,
                              "code_commit": commit}
    if not cls.capabilities.trainable:
        clip_table(dataset)  # the dataset must exist even when there is nothing to learn
        _save_config(run_dir, method, profile, cfg, params, overrides)
        save_checkpoint(run_dir / FINAL_CHECKPOINT, model, 0, with_optimizer=False)
    else:
        tc = train_config(cfg)  # bad train.* keys fail before the data is loaded
        _check_train_domains(dataset, cls)
        if not resume:
            _save_config(run_dir, method, profile, cfg, params, overrides)
        data = TrainData.from_dataset(dataset, model.size, seed, tc.max_frames_per_clip,
                                      pseudo_pose=cls.capabilities.needs_paired_pose)
        if data.pose_label_counts:
            record["pose_label_counts"] = data.pose_label_counts
        res = train(model, data, run_dir, seed=seed, device=device, resume=resume)
        before = _read_json(run_dir / "train.json").get("train_seconds", 0.0) if resume else 0.0
        record.update(steps=res.steps, train_seconds=round(before + res.seconds, 3),
                      world_size=res.world_size, interrupted=res.interrupted)
    if _rank() == 0:
        write_json(run_dir / "train.json", record)
    return run_dir, record


def evaluate_run(params: Params, method: str, run_dir: Path, checkpoint: str | Path | None = None,
                 tasks: list[str] | tuple[str, ...] = (), trust_checkpoint: bool = False,
                 cfg: dict[str, Any] | None = None, profile: str | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` (default: the run's own) into ``run_dir`` and write ``run.json``."""
    from .eval.evaluator import check_metric_names, evaluate
    from .leaderboard.provenance import code_commit, dataset_version, now_iso
    from .models.checkpoint import load_checkpoint
    from .train.trainer import FINAL_CHECKPOINT

    commit = code_commit()  # read at the start: the tree may change while a long evaluation runs
    cls = method_class(method)
    if cfg is None and (run_dir / CONFIG_FILE).is_file():
        profile, cfg = _load_config(run_dir, method)
    elif cfg is None:
        _, cfg, profile = resolve(params, method, profile)
    chosen = select_tasks(cls, tasks or params.eval.tasks)
    check_metric_names(params.eval)
    dataset = Path(params.build.out_dir)
    load_pairs(dataset, chosen)
    ckpt = Path(checkpoint) if checkpoint else run_dir / FINAL_CHECKPOINT
    if not ckpt.is_file():
        raise CheckpointError(f"checkpoint not found: {ckpt}", hint="train first, or pass --checkpoint PATH")
    model = cls(cfg)
    load_checkpoint(model, ckpt, trust=trust_checkpoint)
    if not (run_dir / CONFIG_FILE).is_file():
        _save_config(run_dir, method, profile or params.run.profile, cfg, params, ())
    device = _device(params)
    result = evaluate(model, dataset, run_dir, params.eval, chosen, device)
    train_rec = _read_json(run_dir / "train.json")
    info = {"run_id": run_dir.name, "method": method, "profile": profile,
            "seed": int(_load_doc(run_dir, method)["params"]["seed"]),
            "steps": int(train_rec.get("steps", 0)), "train_seconds": float(train_rec.get("train_seconds", 0.0)),
            "device": train_rec.get("device") or _device_name(device), "date": now_iso(),
            "dataset_version": dataset_version(dataset), "size": model.size,
            # the training commit when this run trained; an evaluation-only run names the evaluating code
            "code_commit": train_rec.get("code_commit") or commit,
            "checkpoint": str(ckpt), "tasks": chosen, "eval_seconds": round(result.seconds, 3),
            # methods trained on pose vectors: were they ground truth, 3DMM pseudo labels, or both
            "pose_labels": model.cfg.get("pose_labels", "") if cls.capabilities.needs_paired_pose else ""}
    if _rank() == 0:
        write_json(run_dir / "run.json", info)
    return {t: {m: v.value for m, v in ms.items()} for t, ms in result.metrics.items()}


def run(params: Params, method: str, profile: str | None = None, checkpoint: str | None = None,
        tasks: list[str] | tuple[str, ...] = (), overrides: list[str] | tuple[str, ...] = (),
        resume: str | None = None, trust_checkpoint: bool = False, publish: bool = True) -> RunOutcome:
    from .leaderboard.publish import publish_run
    from .leaderboard.store import read_rows

    cls, cfg, profile = resolve(params, method, profile, overrides)
    chosen = select_tasks(cls, tasks or params.eval.tasks)
    dataset = Path(params.build.out_dir)
    load_pairs(dataset, chosen)
    from .eval.evaluator import check_metric_names

    check_metric_names(params.eval)
    board = Path(params.run.leaderboard_dir) / f"{params.run.benchmark}.csv"
    if publish:
        read_rows(board)  # a corrupt leaderboard stops the run before any work
    if checkpoint and not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    if checkpoint and resume:
        raise ConfigError("--checkpoint and --resume exclude each other")
    run_id = resume or new_run_id()
    run_dir = run_dir_for(params, method, run_id)
    if checkpoint:
        _save_config(run_dir, method, profile, cfg, params, overrides)
        write_json(run_dir / "train.json", {"run_id": run_id, "profile": profile, "steps": 0, "train_seconds": 0.0,
                                            "device": "", "checkpoint_from": str(checkpoint)})
    else:
        _, record = train_only(params, method, profile, overrides, run_id, resume=bool(resume))
        if record["interrupted"]:
            return RunOutcome(run_id, run_dir, {}, None, interrupted=True)
        profile, cfg = _load_config(run_dir, method)
    metrics = evaluate_run(params, method, run_dir, checkpoint, chosen, trust_checkpoint, cfg=cfg, profile=profile)
    path = None
    if publish and _rank() == 0:
        path = publish_run(run_dir, params.run.leaderboard_dir, params.run.benchmark)
    return RunOutcome(run_id, run_dir, metrics, path)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _device_name(device: Any) -> str:
    import platform

    import torch

    if getattr(device, "type", "") == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def split_overrides(items: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``--set`` values of the harness verbs: keys of a params.yaml section (``eval.*``, ``run.*``, ``seed``...) go
    to the params, every other key (``size``, ``train.steps``...) to the method profile."""
    import dataclasses

    sections = {f.name for f in dataclasses.fields(Params)}
    to_params, to_profile = [], []
    for item in items:
        key = item.split("=", 1)[0].strip()
        (to_params if key.split(".")[0] in sections else to_profile).append(item)
    return to_params, to_profile
