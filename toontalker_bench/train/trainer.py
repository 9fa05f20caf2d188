"""The generic trainer every learned method runs under.

It owns what must be identical across methods: seeding, data order, AMP (``train.amp`` on CUDA,
``train.amp_cpu`` on CPU), gradient accumulation, DDP, checkpoints,
resume, logs and validation grids. A method owns its networks, losses and optimisers and does its own
``backward()`` / ``optimizer.step()`` inside :meth:`Method.training_step`.

How accumulation and DDP reach inside a method's step is :mod:`.distributed`; what training reports (CSV,
TensorBoard, sample grids, progress lines) is :mod:`.logs`. One caveat with ``grad_accum`` > 1: while an
optimiser's step is pending its gradients keep accumulating, so a GAN whose generator loss also back-propagates into
the discriminator should freeze the discriminator's parameters (``requires_grad_(False)``) during the generator pass,
as is good practice anyway.
Each step re-seeds torch from ``(seed, step, rank)``, so random augmentation or noise inside a method is reproducible
across ``--resume``.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is initialised here: NCCL on GPU, gloo
on CPU. Rank 0 writes checkpoints, logs and grids.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import CheckpointError, ConfigError
from ..core.progress import progress, quiet
from ..core.visual import save_png
from ..models.base import Method
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.registry import TrainConfig
from .data import TrainData, move, split_micro
from .distributed import DeferredSteps, agree, find_optimizers, init_distributed, local_device
from .logs import TrainLogs, sample_grid

log = logging.getLogger(__name__)

FINAL_CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainResult:
    steps: int
    seconds: float
    checkpoint: Path
    interrupted: bool
    world_size: int
    autocast: str  # "bf16" when the steps ran under bfloat16 autocast, else "off"


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to save a checkpoint and stop; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ANN401
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received %s: saving a checkpoint after this step", signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------------------------------ the loop
def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step_*.safetensors"))
    return ckpts[-1] if ckpts else None


def _save(method: Method, run_dir: Path, step: int, keep: int) -> Path:
    path = save_checkpoint(run_dir / "checkpoints" / f"step_{step:08d}.safetensors", method, step)
    for old in sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def train(method: Method, data: TrainData, run_dir: str | Path, tc: TrainConfig, *, device: torch.device,
          seed: int = 0, resume: bool = False) -> TrainResult:
    """Train ``method`` for ``tc.steps`` into ``run_dir``; see the module docstring. ``tc`` (the profile's checked
    ``train:`` section) and ``device`` come resolved from the run plan (:func:`toontalker_bench.runs.plan_run`).

    ``resume=True`` continues from the newest ``checkpoints/step_*.safetensors`` of ``run_dir``.
    """
    run_dir = Path(run_dir)
    dev = local_device(device)
    rank, world = init_distributed(dev)
    if tc.batch_size % (world * tc.grad_accum):
        raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by processes x grad_accum "
                          f"= {world} x {tc.grad_accum}")
    method.to(dev).train()
    start = 0
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise CheckpointError(f"nothing to resume in {run_dir}", hint="start a new run without --resume")
        start = load_checkpoint(method, ckpt, optimizer=True)
        log.info("resuming %s at step %d from %s", method.name, start, ckpt)
    if world > 1:
        with torch.no_grad():
            for t in method.state_dict().values():
                dist.broadcast(t, 0)
    deferred = DeferredSteps(find_optimizers(method), tc.grad_accum, world)
    amp = tc.amp if dev.type == "cuda" else tc.amp_cpu
    logs = TrainLogs(run_dir, start, tc.tensorboard, f"train {method.name}", tc.steps) if rank == 0 else None
    step, t0, t_last, n_last = start, time.perf_counter(), time.perf_counter(), start
    sums: dict[str, float] = {}
    bar = progress(total=tc.steps, initial=start, desc=f"train {method.name}", unit="step",
                   disable=rank != 0 or quiet())  # in a log, TrainLogs.progress writes the richer line
    interrupted = False
    with _StopFlag() as stop:
        while step < tc.steps:
            batch = move(data.batch(step, tc.batch_size, rank, world), dev)
            method.zero_grad(set_to_none=True)
            micro = split_micro(batch, tc.grad_accum)
            deferred.optimizers = find_optimizers(method)  # a method may create its optimisers lazily
            out: dict[str, float] = {}
            for i, mb in enumerate(micro):
                torch.manual_seed(_step_seed(seed, step, rank, i))
                with deferred.micro_batch(last=i == len(micro) - 1), \
                        torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    logs_i = method.training_step(mb, step)
                for k, v in logs_i.items():
                    out[k] = out.get(k, 0.0) + float(v) / len(micro)
            step += 1
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            if "loss" in out and not math.isfinite(out["loss"]):
                log.warning("non-finite loss %s at step %d", out["loss"], step)
            bar.update(1)
            bar.set_postfix(loss=f"{out.get('loss', float('nan')):.4f}")
            stop_now = agree(stop.signum is not None, world, dev)
            if rank == 0 and logs is not None and (step % tc.log_every == 0 or step == tc.steps or stop_now):
                now = time.perf_counter()
                n = step - n_last
                means = {k: v / max(n, 1) for k, v in sums.items()}
                logs.write(step, {**means, "steps_per_s": n / max(now - t_last, 1e-9)})
                logs.progress(step, means, final=step == tc.steps)
                sums, t_last, n_last = {}, now, step
            if rank == 0 and logs is not None and step % tc.sample_every == 0:
                picture = sample_grid(method, data, dev)
                save_png(run_dir / "samples" / f"step_{step:08d}.png", picture)
                logs.image("samples", picture, step)
            if step % tc.checkpoint_every == 0 or step == tc.steps or stop_now:
                if rank == 0:
                    _save(method, run_dir, step, tc.keep_checkpoints)
                if world > 1:
                    dist.barrier()
            if stop_now:
                interrupted = True
                break
    bar.close()
    seconds = time.perf_counter() - t0
    final = run_dir / FINAL_CHECKPOINT
    if rank == 0:
        if logs is not None:
            logs.close()
        if not interrupted:
            save_checkpoint(final, method, step, with_optimizer=False)
        log.info("%s: %d steps in %.1f s (%.2f steps/s)%s", method.name, step - start, seconds,
                 (step - start) / max(seconds, 1e-9), " — interrupted, resume with --resume" if interrupted else "")
    if world > 1:
        dist.barrier()
    return TrainResult(step, seconds, final, interrupted, world, "bf16" if amp else "off")


def _step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1)[0])


