"""The generic trainer every learned method runs under.

It owns what must be identical across methods: seeding, data order, AMP, gradient accumulation, DDP, checkpoints,
resume, logs and validation grids. A method owns its networks, losses and optimisers and does its own
``backward()`` / ``optimizer.step()`` inside :meth:`Method.training_step`.

How accumulation and DDP reach inside a method's step: the trainer finds the method's ``torch.optim.Optimizer``
attributes (directly, or in a dict/list attribute) and, while a step runs, defers their ``step()`` until the last
micro-batch (``zero_grad()`` is a no-op while a step is deferred). Before the real step the gradients are averaged
over DDP ranks (all-reduce) and over micro-batches — the same numbers as one process on the whole global batch.
One caveat with ``grad_accum`` > 1: while an optimiser's step is pending its gradients keep accumulating, so a GAN
whose generator loss also back-propagates into the discriminator should freeze the discriminator's parameters
(``requires_grad_(False)``) during the generator pass, as is good practice anyway.
Each step re-seeds torch from ``(seed, step, rank)``, so random augmentation or noise inside a method is reproducible
across ``--resume``.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is initialised here: NCCL on GPU, gloo
on CPU. Rank 0 writes checkpoints, logs and grids.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import CheckpointError, ConfigError
from ..device import resolve_device
from ..models.base import Method
from ..models.registry import train_config
from ..progress import progress
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.base import to_uint8
from .data import TrainData, move, split_micro

log = logging.getLogger(__name__)

FINAL_CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainResult:
    steps: int
    seconds: float
    checkpoint: Path
    interrupted: bool
    world_size: int


# ------------------------------------------------------------------------------------------------ distributed
def init_distributed(device: torch.device) -> tuple[int, int]:
    """``(rank, world_size)``; initialises the process group from torchrun's environment when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its ``LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def find_optimizers(method: Method) -> list[torch.optim.Optimizer]:
    found: list[torch.optim.Optimizer] = []
    for value in vars(method).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        found.extend(v for v in items if isinstance(v, torch.optim.Optimizer) and v not in found)
    return found


class _DeferredSteps:
    """Patches optimisers so that only the last micro-batch steps, after averaging gradients (see module doc)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], micro: int, world: int) -> None:
        self.optimizers, self.micro, self.world = optimizers, micro, world
        self.pending: set[int] = set()

    @contextlib.contextmanager
    def micro_batch(self, last: bool) -> Iterator[None]:
        if self.micro == 1 and self.world == 1:
            yield
            return
        for opt in self.optimizers:
            opt.step = self._step(opt, last)  # type: ignore[method-assign]
            opt.zero_grad = self._zero(opt)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for opt in self.optimizers:
                del opt.step, opt.zero_grad  # back to the class methods

    def _step(self, opt: torch.optim.Optimizer, last: bool):  # noqa: ANN202
        real = type(opt).step.__get__(opt)

        def step(closure=None):  # noqa: ANN001, ANN202
            if closure is not None:
                raise RuntimeError("optimizer closures are not supported with grad_accum or DDP")
            if not last:
                self.pending.add(id(opt))
                return None
            self.pending.discard(id(opt))
            self._average(opt)
            return real()

        return step

    def _zero(self, opt: torch.optim.Optimizer):  # noqa: ANN202
        real = type(opt).zero_grad.__get__(opt)

        def zero_grad(set_to_none: bool = True) -> None:
            if id(opt) not in self.pending:
                real(set_to_none)

        return zero_grad

    def _average(self, opt: torch.optim.Optimizer) -> None:
        scale = 1.0 / (self.micro * self.world)
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    if self.world > 1:  # every rank must join the collective, even without a gradient
                        p.grad = torch.zeros_like(p)
                    else:
                        continue
                if self.world > 1:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.mul_(scale)


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


# ------------------------------------------------------------------------------------------------ logging
class _Logs:
    """``train_log.csv`` (truncated to the resume step) plus TensorBoard scalars."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool) -> None:
        self.path = run_dir / "train_log.csv"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
            if rows:
                self.fields = list(rows[0])
            self._rewrite(rows)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        from ..io import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            if self.fields:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(rows)

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}}
        new = self.fields is None
        if new:
            self.fields = list(row)
        elif any(k not in self.fields for k in row):
            # a later training stage logs new terms: widen the header instead of dropping them
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.fields += [k for k in row if k not in self.fields]
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.fields, restval="")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ------------------------------------------------------------------------------------------------ the loop
def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step_*.safetensors"))
    return ckpts[-1] if ckpts else None


def _save(method: Method, run_dir: Path, step: int, keep: int) -> Path:
    path = save_checkpoint(run_dir / "checkpoints" / f"step_{step:08d}.safetensors", method, step)
    for old in sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _sample_grid(method: Method, data: TrainData, device: torch.device, path: Path) -> None:
    from ..eval.visual import grid, save_png

    preview = data.preview()
    rows = []
    was_training = method.training
    method.eval()
    with torch.no_grad():
        for src_dom, (src, _) in preview.items():
            for drv_dom, (_, drv) in preview.items():
                if src_dom != drv_dom and not method.capabilities.cross_domain:
                    continue
                out = method.animate(src.to(device), drv.to(device), source_domain=src_dom,  # type: ignore[arg-type]
                                     driving_domain=drv_dom)  # type: ignore[arg-type]
                rows.append([to_uint8(src), *to_uint8(drv)])
                rows.append([np.full_like(to_uint8(src), 255), *to_uint8(out)])
    method.train(was_training)
    save_png(path, grid(rows))


def train(method: Method, data: TrainData, run_dir: str | Path, *, seed: int = 0, device: str | torch.device = "auto",
          resume: bool = False) -> TrainResult:
    """Train ``method`` for its profile's ``train.steps`` into ``run_dir``; see the module docstring.

    ``resume=True`` continues from the newest ``checkpoints/step_*.safetensors`` of ``run_dir``.
    """
    run_dir = Path(run_dir)
    tc = train_config(method.cfg)
    dev = local_device(resolve_device(device) if isinstance(device, str) else device)
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
    deferred = _DeferredSteps(find_optimizers(method), tc.grad_accum, world)
    amp = tc.amp and dev.type == "cuda"
    logs = _Logs(run_dir, start, tc.tensorboard) if rank == 0 else None
    step, t0, t_last, n_last = start, time.perf_counter(), time.perf_counter(), start
    sums: dict[str, float] = {}
    bar = progress(total=tc.steps, initial=start, desc=f"train {method.name}", unit="step",
                   **({} if rank == 0 else {"disable": True}))
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
            stop_now = _agree(stop.signum is not None, world, dev)
            if rank == 0 and logs is not None and (step % tc.log_every == 0 or step == tc.steps or stop_now):
                now = time.perf_counter()
                n = step - n_last
                logs.write(step, {**{k: v / max(n, 1) for k, v in sums.items()},
                                  "steps_per_s": n / max(now - t_last, 1e-9)})
                sums, t_last, n_last = {}, now, step
            if rank == 0 and step % tc.sample_every == 0:
                _sample_grid(method, data, dev, run_dir / "samples" / f"step_{step:08d}.png")
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
    return TrainResult(step, seconds, final, interrupted, world)


def _step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1)[0])


def _agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank as soon as one rank was signalled."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
