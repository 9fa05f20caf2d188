"""The ``tubes`` stage: sources -> shot cuts and face tubes with per-frame boxes, scores and landmarks, in one decode.

:mod:`.plan` makes the jobs (a source, or a chunk of a long one), :mod:`.worker` decodes each job once (cuts, then
face tracking inside the shots) and :mod:`.assemble` numbers shots and tubes into the tables. Outputs:
``cuts.parquet`` (every shot the cut finder delimited), ``tubes.parquet``, ``tracks/<tube_id>.npz``,
``rejects.parquet`` and ``report.json``.

Resumable (:mod:`..stage`): a job writes its tube arrays to ``.parts/<id>.npz`` and then its part record
``.parts/<id>.json``, keyed by a hash of the inputs and params; a rerun skips jobs whose part matches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.config import Params, view
from ...core.executors import Executor
from ..stage import Stage
from .assemble import assemble
from .plan import check_params, plan_jobs
from .worker import SourceJob, process_source

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape.out_dir", "cuts", "tubes")


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Run the tubes stage; returns (and writes) the report."""
    params = view(params, READS)
    p = params.tubes
    check_params(p, params.cuts)
    stage = Stage("tubes", p.out_dir, params, executor)
    jobs, by_source, rejects = plan_jobs(params, stage.parts_dir)
    done = stage.run_jobs(jobs, _with_id, complete=_complete(stage.parts_dir), desc="tubes")
    listed = {j.id for j in jobs}
    for f in stage.parts_dir.glob("*.npz") if stage.parts_dir.is_dir() else []:
        if f.stem not in listed:
            f.unlink()
    sources = {j.payload.source["source_id"]: j.payload.source for j in jobs}
    t = assemble(stage.out, stage.parts_dir, sources, by_source, done, rejects, p, params.cuts.min_shot_frames)
    report = {
        "sources": len(by_source), "sources_failed": int((t.rejects["reason"] == "source_error").sum()),
        "tubes": len(t.tubes), "tubes_by_domain": {str(k): int(v) for k, v in t.tubes.groupby("domain").size().items()},
        "rejects": {str(k): int(v) for k, v in t.rejects.groupby("reason").size().items()},
        "shots": int(t.cuts["kept"].sum()), "dropped_short_shots": t.dropped,
        "frames_decoded": t.frames, "detections": t.detections,
        "detectors": {"real": p.real_detector, "cartoon": p.cartoon_detector},
    }
    new = [done.parts[i] for i in done.new]
    res = stage.finish(report, {"sources_resumed": done.resumed, "jobs": len(jobs),
                                "work_seconds": round(done.work_seconds, 2), "job_seconds": done.job_seconds,
                                "frames_per_second": done.rate(lambda part: part["stats"]["frames"]),
                                "frames_decoded_with_chunk_overlap": sum(x["stats"]["decoded"] for x in new)})
    log.info("tubes: %d tubes and %d shots from %d sources (%d jobs, %d resumed), %d rejects %s, %d frames in %.1fs "
             "(%.1f fps/worker)", report["tubes"], report["shots"], len(by_source), len(jobs), done.resumed,
             len(t.rejects), report["rejects"], t.frames, res["wall_seconds"], res["frames_per_second"] or 0)
    return res


def _complete(parts_dir: Path) -> Callable[[dict[str, Any]], bool]:
    """Whether a finished job's tube arrays are still there (its part record alone is not enough)."""
    return lambda part: (parts_dir / f"{part['_id']}.npz").is_file() if "_id" in part else False


def _with_id(job: SourceJob) -> dict[str, Any]:
    """:func:`.worker.process_source`, its part record naming the job (the bundle's file name)."""
    return {"_id": Path(job.bundle).stem, **process_source(job)}
