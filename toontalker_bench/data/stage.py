"""The skeleton every data stage runs on: jobs -> process (on the executor) -> assemble.

A stage builds a list of :class:`Job` (one per source video, say), each named by ``id`` and keyed by a hash of
everything its output depends on (input content, params). :meth:`Stage.run_jobs` skips jobs finished by an earlier
run, runs the rest on the executor, and returns every job's *part record*; the stage then assembles its tables from
the part records alone. A worker writes its job's files first and its part record last, to
``<out_dir>/.parts/<id>.json``, so a killed run leaves no record that a rerun would trust.

The same object clears what a killed run left (``.<name>.tmp-*`` temporaries) when it starts, owns the executor
when the caller gives none, and at the end writes the stage's ``report.json`` (facts about the data only, so the
output's bytes depend on nothing else) and its run facts (timings, work resumed) to ``data/reports/<stage>.json``.
Part records are bookkeeping, not data: ``.dvcignore`` keeps them out of the outputs' DVC hashes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import Params
from ..core.executors import Executor, Failure, make_executor
from ..core.io import clear_partial_files, write_json, write_run_report

log = logging.getLogger(__name__)

PARTS_DIR = ".parts"
SECONDS = "_seconds"  # how long a job took: returned with its part record, never written into it


@dataclass(frozen=True)
class Job:
    id: str  # names the part record: a source id, a video name (a safe file name)
    key: str  # hash of everything the job's output depends on
    payload: Any  # what the stage's process function receives
    cost: float = 0.0  # relative work (e.g. frames x pixels): bigger jobs start first, so workers finish together


@dataclass
class Outcome:
    parts: dict[str, dict[str, Any]]  # job id -> part record, for every job done now or earlier
    failures: dict[str, str] = field(default_factory=dict)  # job id -> reason
    resumed: int = 0
    work_seconds: float = 0.0
    job_seconds: dict[str, float] = field(default_factory=dict)  # job id -> seconds, for the jobs done now
    new: list[str] = field(default_factory=list)  # ids of the jobs done in this run

    def rate(self, count: Callable[[dict[str, Any]], float]) -> float | None:
        """``count`` summed over this run's part records per second of work (e.g. frames/s per worker)."""
        if not self.work_seconds:
            return None
        return round(sum(count(self.parts[i]) for i in self.new) / self.work_seconds, 1)

    def ordered(self) -> list[dict[str, Any]]:
        """Part records in job-id order (the order every stage assembles its tables in)."""
        return [self.parts[k] for k in sorted(self.parts)]


@dataclass(frozen=True)
class _Recorded:
    """Runs ``process`` on a job's payload in a worker and writes the part record after the job's own files."""

    process: Callable[[Any], dict[str, Any]]
    parts_dir: str

    def __call__(self, job: Job) -> dict[str, Any]:
        t0 = time.perf_counter()
        part = {"key": job.key, **self.process(job.payload)}
        write_json(Path(self.parts_dir) / f"{job.id}.json", part)
        return part | {SECONDS: time.perf_counter() - t0}


class Stage:
    """One run of a data stage; see the module docstring."""

    def __init__(self, name: str, out_dir: str | Path, params: Params, executor: Executor | None = None) -> None:
        self.name = name
        self.out = Path(out_dir)
        self.params = params
        self.executor = executor
        self.t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        clear_partial_files(self.out)  # what a killed run was writing

    @property
    def parts_dir(self) -> Path:
        return self.out / PARTS_DIR

    def _resumable(self, job: Job, complete: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        try:
            part = json.loads((self.parts_dir / f"{job.id}.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(part, dict) or part.get("key") != job.key or not complete(part):
            return None
        return part

    def run_jobs(self, jobs: Iterable[Job], process: Callable[[Any], dict[str, Any]], *,
                 complete: Callable[[dict[str, Any]], bool] = lambda part: True, desc: str = "") -> Outcome:
        """Run ``process`` on every job not finished earlier (``complete`` checks a finished job's files still
        exist). A job that raises is a recorded failure; the stage goes on. Part records of jobs no longer listed
        are removed."""
        jobs = list(jobs)
        out = Outcome({})
        todo = []
        for job in jobs:
            part = self._resumable(job, complete)
            if part is None:
                todo.append(job)
            else:
                out.parts[job.id] = part
        out.resumed = len(out.parts)
        todo.sort(key=lambda j: -j.cost)  # stable: equal costs keep the stage's order
        ex = self.executor or make_executor(self.params.executor, self.params.n_workers(), self.params.scheduler)
        try:
            for job, res in ex.map(_Recorded(process, str(self.parts_dir)), todo, desc=desc or self.name):
                if isinstance(res, Failure):
                    log.warning("%s: %s failed: %s", self.name, job.id, res.reason)
                    log.debug("%s", res.detail)
                    out.failures[job.id] = res.reason
                else:
                    out.job_seconds[job.id] = round(res[SECONDS], 3)
                    out.work_seconds += res.pop(SECONDS)
                    out.parts[job.id] = res
                    out.new.append(job.id)
        finally:
            if self.executor is None:
                ex.close()
        listed = {j.id for j in jobs}
        for f in self.parts_dir.glob("*.json") if self.parts_dir.is_dir() else ():
            if f.stem not in listed:
                f.unlink()
        return out

    def finish(self, report: dict[str, Any] | None, facts: dict[str, Any]) -> dict[str, Any]:
        """Write ``report.json`` (when given) and the run facts (plus ``wall_seconds``); returns both merged."""
        facts = {**facts, "wall_seconds": round(time.perf_counter() - self.t0, 2)}
        if report is not None:
            write_json(self.out / "report.json", report)
        write_run_report(self.out, self.name, facts)
        return (report or {}) | facts
