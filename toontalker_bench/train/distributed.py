"""Data-parallel training under ``torchrun`` and gradient accumulation, without the methods knowing.

The trainer finds a method's optimisers and, while a step runs, defers their ``step()`` until the last micro-batch
(``zero_grad()`` is a no-op while a step is deferred); before the real step the gradients are averaged over ranks
(all-reduce) and micro-batches — the same numbers as one process on the whole global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from ..models.base import Method


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


class DeferredSteps:
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



def agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank as soon as one rank was signalled."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
