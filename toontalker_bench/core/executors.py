"""Run one function over many work items: in-process, a local process pool (default), or Dask distributed.

All executors share one contract: :meth:`Executor.map` yields ``(item, result)`` pairs in input order, where
``result`` is either the function's return value or the :class:`Failure` it raised, so one bad video never kills a
batch and the caller records the reason.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .progress import progress

log = logging.getLogger(__name__)
I = TypeVar("I")
R = TypeVar("R")


@dataclass(frozen=True)
class Failure:
    """A work item that raised; ``reason`` is one line, ``detail`` the traceback for the logs."""

    reason: str
    detail: str = ""


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    from .errors import UserError

    try:
        return fn(item)
    except UserError as e:
        return Failure(str(e))
    except Exception as e:  # noqa: BLE001 - recorded per item, never dropped
        return Failure(f"{type(e).__name__}: {e}", traceback.format_exc())


class Executor:
    name = "base"

    def map(self, fn: Callable[[I], R], items: Iterable[I], desc: str = "") -> Iterator[tuple[I, R | Failure]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Process pool over ``workers`` processes; ``workers == 1`` runs inline (no pickling, easy debugging).

    The pool starts with the first :meth:`map` that needs it and serves every later one until :meth:`close`, so
    stages run on one executor (a benchmark, a script calling several stages) start their workers once."""

    name = "local"

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing as mp

            ctx = mp.get_context("forkserver" if os.name == "posix" else "spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        return self._pool

    def map(self, fn: Callable[[I], R], items: Iterable[I], desc: str = "") -> Iterator[tuple[I, R | Failure]]:
        items = list(items)
        if self.workers == 1 or (len(items) <= 1 and self._pool is None):
            for item in progress(items, desc=desc):
                yield item, _call(fn, item)
            return
        pool = self._get_pool()
        futures = [pool.submit(_call, fn, it) for it in items]
        bar = progress(total=len(items), desc=desc)
        broken = False
        for item, fut in zip(items, futures):
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - a crashed worker process
                res = Failure(f"worker crashed: {type(e).__name__}: {e}")
                broken = True
            bar.update(1)
            yield item, res
        bar.close()
        if broken:  # a pool that lost a worker refuses new work: the next map starts a fresh one
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """Dask distributed: connects to ``scheduler`` (``tcp://host:port``) or starts a loopback LocalCluster."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int = 0, retries: int = 2) -> None:
        from distributed import Client, LocalCluster

        # Dask logs every worker start/stop at INFO; keep that for -vv (root at DEBUG)
        if logging.getLogger().level > logging.DEBUG:
            logging.getLogger("distributed").setLevel(logging.WARNING)
        self.retries = retries
        self._cluster = None
        if scheduler:
            self.client = Client(scheduler)
        else:
            self._cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                         host="127.0.0.1", dashboard_address=None, processes=True)
            self.client = Client(self._cluster)

    def map(self, fn: Callable[[I], R], items: Iterable[I], desc: str = "") -> Iterator[tuple[I, R | Failure]]:
        items = list(items)
        futures = self.client.map(_call, [fn] * len(items), items, retries=self.retries, pure=False)
        bar = progress(total=len(items), desc=desc)
        for item, fut in zip(items, futures):
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - lost worker after retries
                res = Failure(f"task failed on the cluster: {type(e).__name__}: {e}")
            bar.update(1)
            yield item, res
        bar.close()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(kind: str = "local", workers: int = 0, scheduler: str | None = None) -> Executor:
    from .errors import ConfigError

    if kind == "local":
        return LocalExecutor(workers)
    if kind == "dask":
        return DaskExecutor(scheduler, workers)
    raise ConfigError(f"unknown executor {kind!r}", hint="use local or dask")
