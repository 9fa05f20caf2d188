"""``toontalker-bench run``: a run plan validated once -> train (unless a checkpoint is given) -> evaluate -> publish.

:func:`plan_run` checks everything a user can get wrong (method, profile, ``--set`` keys, the trainer's settings,
tasks, metric names, the dataset and its protocol, the checkpoint path, a corrupt leaderboard, the run to resume)
before any work starts, and returns a :class:`RunPlan` that :func:`train`, :func:`evaluate` and :func:`publish`
receive as it is. A run directory holds ``config.yaml`` (the resolved profile and the params used), ``train.json``
(steps, seconds, device, autocast, the steps of each training stage that ran),
``checkpoint.safetensors``, the evaluation outputs (see
:mod:`toontalker_bench.eval.evaluator`) and ``run.json`` (provenance for the leaderboard).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from .core.config import Params, to_dict
from .core.device import device_name, resolve_device
from .core.domains import DOMAINS, is_cross
from .core.errors import CheckpointError, ConfigError, DatasetError, UserError
from .core.io import safe_name, write_json, write_text
from .data.dataset import check_tasks, clip_table, load_pairs
from .models.base import Method
from .models.registry import TrainConfig, build_method, load_profile, method_class, train_config

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"


@dataclass
class RunPlan:
    """Everything a run needs, resolved and checked once."""

    params: Params
    method: str
    cls: type[Method]
    profile: str
    cfg: dict[str, Any]  # the resolved method config (profile + overrides; every train.* key when it trains)
    overrides: list[str]
    tasks: list[str]
    run_id: str
    run_dir: Path
    seed: int
    device: torch.device  # resolved once from run.device; the trainer and the evaluator receive it
    train_config: TrainConfig | None  # the profile's checked train: section; None when the plan does not train
    checkpoint: Path | None = None  # evaluate this instead of the run's own checkpoint (no training)
    trust_checkpoint: bool = False
    resume: bool = False
    allow_dirty: bool = False  # publish rows of uncommitted code (their code_commit carries the diff's hash)

    @property
    def dataset(self) -> Path:
        return Path(self.params.build.out_dir)

    @property
    def leaderboard(self) -> Path:
        return Path(self.params.run.leaderboard_dir) / f"{self.params.run.benchmark}.csv"


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    metrics: dict[str, dict[str, Any]]
    leaderboard: Path | None
    interrupted: bool = False


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def select_tasks(cls: type[Method], tasks: list[str] | tuple[str, ...]) -> list[str]:
    """Requested tasks, or every task the method can do; asking a self-only method for a cross task is an error."""
    chosen = check_tasks(list(tasks))
    if not tasks:
        return [t for t in chosen if not is_cross(t) or cls.capabilities.cross_domain]
    for t in chosen:
        if is_cross(t) and not cls.capabilities.cross_domain:
            raise ConfigError(f"method {cls.name!r} cannot do cross-domain task {t!r}",
                              hint="choose among self_real, self_cartoon")
    return chosen


def plan_run(params: Params, method: str, profile: str | None = None, overrides: list[str] | tuple[str, ...] = (),
             tasks: list[str] | tuple[str, ...] = (), run_id: str | None = None, resume: bool = False,
             checkpoint: str | Path | None = None, trust_checkpoint: bool = False, train: bool = True,
             evaluate: bool = True, publish: bool = False, allow_dirty: bool = False) -> RunPlan:
    """Resolve and check a run once; raises a :class:`~toontalker_bench.core.errors.UserError` for anything wrong.

    An existing run directory (``resume``, or ``evaluate run`` of a finished run) supplies its own saved profile,
    config and seed unless ``profile``/``overrides`` are given for evaluation.
    """
    cls = method_class(method)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not run_id:
        raise ConfigError("under torchrun every process needs the same run directory", hint="pass --run-id NAME")
    if checkpoint and resume:
        raise ConfigError("--checkpoint and --resume exclude each other")
    if checkpoint and not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}", hint="check the path")
    run_id = run_id or new_run_id()
    if not safe_name(run_id):
        raise ConfigError(f"bad run id {run_id!r}", hint="use letters, digits, '.', '_' and '-' only")
    run_dir = Path(params.run.runs_dir) / method / run_id
    saved = _saved_config(run_dir, method, required=resume)
    all_overrides = [*params.run.overrides, *overrides]
    if saved is not None and (resume or (not train and profile is None and not overrides)):
        profile, cfg, seed = saved["profile"], saved["config"], int(saved["params"]["seed"])
        all_overrides = list(saved.get("overrides", []))
    else:
        profile = profile or params.run.profile
        cfg, seed = load_profile(method, profile, all_overrides), params.seed
    # bad train.* keys fail before any data is loaded; the run config records every trainer setting, defaults too
    tc = train_config(cfg) if train and cls.capabilities.trainable and not checkpoint else None
    if tc is not None:
        cfg = {**cfg, "train": dataclasses.asdict(tc)}
    chosen = select_tasks(cls, tasks or params.eval.tasks)
    dataset = Path(params.build.out_dir)
    if train and not checkpoint:
        _check_train_domains(dataset, cls)
    if evaluate:
        from .eval.evaluator import check_metric_names

        check_metric_names(params.eval)
        load_pairs(dataset, chosen)
    if publish:
        from .core.provenance import code_commit, is_dirty
        from .leaderboard.store import read_rows

        read_rows(Path(params.run.leaderboard_dir) / f"{params.run.benchmark}.csv")  # a corrupt board stops us now
        if not allow_dirty and is_dirty(commit := code_commit()):  # stop before training, not after
            raise UserError(f"the checkout has uncommitted changes ({commit}): its rows could not name their code",
                            hint="commit first, pass --no-publish, or --allow-dirty (rows keep the diff's hash)")
    return RunPlan(params, method, cls, profile, cfg, all_overrides, chosen, run_id, run_dir, seed,
                   resolve_device(params.run.device), tc, Path(checkpoint) if checkpoint else None, trust_checkpoint,
                   resume, allow_dirty)


def _saved_config(run_dir: Path, method: str, required: bool) -> dict[str, Any] | None:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        if required:
            raise ConfigError(f"no run to resume at {run_dir}", hint="check --method and the run id (ls runs/<method>)")
        return None
    doc = yaml.safe_load(path.read_text())
    if doc.get("method") != method:
        raise ConfigError(f"run {run_dir} belongs to method {doc.get('method')!r}, not {method!r}")
    return doc


def _check_train_domains(dataset_dir: Path, cls: type[Method]) -> None:
    clips = clip_table(dataset_dir)  # the dataset must exist even when there is nothing to learn
    if not cls.capabilities.trainable:
        return
    have = set(clips.loc[clips["split"] == "train", "domain"])
    missing = [d for d in DOMAINS if d not in have]
    if missing and cls.capabilities.cross_domain:
        raise DatasetError(f"{dataset_dir} has no {', '.join(missing)} clips in its train split; "
                           f"{cls.name} trains on both domains", hint="add sources of that domain and rebuild")


def _save_config(plan: RunPlan) -> None:
    p = plan.params
    doc = {"method": plan.method, "profile": plan.profile, "overrides": plan.overrides, "config": plan.cfg,
           "params": {"seed": plan.seed, "dataset": p.build.out_dir, "eval": to_dict(p.eval), "run": to_dict(p.run)}}
    write_text(plan.run_dir / CONFIG_FILE, yaml.safe_dump(doc, sort_keys=False))


# ------------------------------------------------------------------------------------------------ the three steps
def train(plan: RunPlan) -> dict[str, Any]:
    """Train into the run directory (a no-op checkpoint for parameter-free methods); returns the training record
    (also written to ``train.json``)."""
    from .core.provenance import code_commit
    from .models.checkpoint import save_checkpoint
    from .train.data import TrainData
    from .train.trainer import FINAL_CHECKPOINT
    from .train.trainer import train as run_trainer

    commit = code_commit()  # the code that trains, read before anything can change the tree
    model = plan.cls(plan.cfg)
    record: dict[str, Any] = {"run_id": plan.run_id, "profile": plan.profile, "steps": 0, "train_seconds": 0.0,
                              "device": device_name(plan.device), "world_size": 1, "interrupted": False,
                              "code_commit": commit}
    if not plan.resume:
        _save_config(plan)
    if not plan.cls.capabilities.trainable:
        save_checkpoint(plan.run_dir / FINAL_CHECKPOINT, model, 0, with_optimizer=False)
    else:
        tc = plan.train_config
        if tc is None:
            raise ValueError("this run plan was made without training (plan_run(train=False) or a --checkpoint)")
        data = TrainData.from_dataset(plan.dataset, model.size, plan.seed, tc.max_frames_per_clip,
                                      model.training_needs(), tc.pair_sampling)
        if data.pose_label_counts:
            record["pose_label_counts"] = data.pose_label_counts
        res = run_trainer(model, data, plan.run_dir, tc, seed=plan.seed, device=plan.device, resume=plan.resume)
        before = _read_json(plan.run_dir / "train.json").get("train_seconds", 0.0) if plan.resume else 0.0
        record.update(steps=res.steps, train_seconds=round(before + res.seconds, 3), world_size=res.world_size,
                      interrupted=res.interrupted, autocast=res.autocast)
        if stages := model.stage_steps(res.steps):
            record["stages"] = stages
    if _rank() == 0:
        write_json(plan.run_dir / "train.json", record)
    return record


def trained_model(plan: RunPlan) -> tuple[Method, Path]:
    """The plan's checkpoint (default: the run's own) loaded into its method, and the checkpoint's path."""
    from .train.trainer import FINAL_CHECKPOINT

    ckpt = plan.checkpoint or plan.run_dir / FINAL_CHECKPOINT
    if not ckpt.is_file():
        raise CheckpointError(f"checkpoint not found: {ckpt}", hint="train first, or pass --checkpoint PATH")
    return build_method(plan.method, cfg=plan.cfg, checkpoint=ckpt, trust=plan.trust_checkpoint), ckpt


def protocol_subset(ep: Any) -> str:
    """``""`` for the whole protocol, else what was cut (such rows are never compared with whole-protocol rows)."""
    return ",".join(f"{k}={getattr(ep, k)}" for k in ("max_pairs", "max_frames") if getattr(ep, k))


def evaluate(plan: RunPlan, split: str = "test") -> dict[str, dict[str, float | None]]:
    """Evaluate the plan's checkpoint (default: the run's own) into the run directory and write ``run.json``.
    ``split="train"``: on pairs of the train clips, into ``eval-train/`` of the run (never published): the
    train-vs-test gap."""
    from .eval.evaluator import evaluate as run_evaluator
    from .data.version import dataset_version
    from .core.provenance import code_commit, now_iso

    commit = code_commit()  # read at the start: the tree may change while a long evaluation runs
    model, ckpt = trained_model(plan)
    if not (plan.run_dir / CONFIG_FILE).is_file():
        _save_config(plan)
    if plan.checkpoint and not (plan.run_dir / "train.json").is_file():
        write_json(plan.run_dir / "train.json", {"run_id": plan.run_id, "profile": plan.profile, "steps": 0,
                                                 "train_seconds": 0.0, "device": "",
                                                 "checkpoint_from": str(plan.checkpoint)})
    if split != "test":
        out = plan.run_dir / f"eval-{split}"
        result = run_evaluator(model, plan.dataset, out, plan.params.eval, plan.tasks, plan.device, split)
        return {t: {m: v.value for m, v in ms.items()} for t, ms in result.metrics.items()}
    result = run_evaluator(model, plan.dataset, plan.run_dir, plan.params.eval, plan.tasks, plan.device)
    train_rec = _read_json(plan.run_dir / "train.json")
    info = {"run_id": plan.run_id, "method": plan.method, "profile": plan.profile, "seed": plan.seed,
            "steps": int(train_rec.get("steps", 0)), "train_seconds": float(train_rec.get("train_seconds", 0.0)),
            "device": train_rec.get("device") or device_name(plan.device), "date": now_iso(),
            "dataset_version": dataset_version(plan.dataset), "size": model.size,
            # the training commit when this run trained; an evaluation-only run names the evaluating code
            "code_commit": train_rec.get("code_commit") or commit,
            "checkpoint": str(ckpt), "tasks": plan.tasks, "eval_seconds": round(result.seconds, 3),
            # methods trained on pose vectors: were they ground truth, 3DMM pseudo labels, or both
            "pose_labels": model.pose_labels(),
            "bracket": "yes" if plan.cls.capabilities.bracket else "", "variant": model.variant(),
            "protocol_subset": protocol_subset(plan.params.eval)}
    if _rank() == 0:
        write_json(plan.run_dir / "run.json", info)
    return {t: {m: v.value for m, v in ms.items()} for t, ms in result.metrics.items()}


def diagnose(plan: RunPlan, splits: tuple[str, ...] = ("test", "train"), max_pairs: int = 8,
             max_frames: int = 32) -> str:
    """Appearance-vs-motion figures of the plan's checkpoint (:mod:`toontalker_bench.eval.diagnose`) into
    ``diagnosis.csv`` (per pair) and ``diagnosis.md`` (means) of the run directory; returns the markdown."""
    from .eval.diagnose import diagnose as run_diagnosis
    from .eval.diagnose import markdown, summarise
    model, _ = trained_model(plan)
    table = run_diagnosis(model, plan.dataset, splits, max_pairs, max_frames, plan.device)
    text = markdown(summarise(table), f"{plan.method} {plan.run_id} (seed {plan.seed}): appearance vs motion")
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(plan.run_dir / "diagnosis.csv", index=False)
    write_text(plan.run_dir / "diagnosis.md", text)
    return text


def publish(plan: RunPlan) -> Path:
    from .leaderboard.publish import publish_run

    return publish_run(plan.run_dir, plan.params.run.leaderboard_dir, plan.params.run.benchmark,
                       allow_dirty=plan.allow_dirty)


def run(plan: RunPlan, publish_rows: bool = True) -> RunOutcome:
    """Train (unless the plan names a checkpoint) -> evaluate -> publish (rank 0 only)."""
    if plan.checkpoint is None:
        record = train(plan)
        if record["interrupted"]:
            return RunOutcome(plan.run_id, plan.run_dir, {}, None, interrupted=True)
    metrics = evaluate(plan)
    path = publish(plan) if publish_rows and _rank() == 0 else None
    return RunOutcome(plan.run_id, plan.run_dir, metrics, path)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def split_overrides(items: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``--set`` values of the harness verbs: keys of a params.yaml section (``eval.*``, ``run.*``, ``seed``...) go
    to the params, every other key (``size``, ``train.steps``...) to the method profile."""
    sections = {f.name for f in dataclasses.fields(Params)}
    to_params, to_profile = [], []
    for item in items:
        key = item.split("=", 1)[0].strip()
        (to_params if key.split(".")[0] in sections else to_profile).append(item)
    return to_params, to_profile
