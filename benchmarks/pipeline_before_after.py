"""The pipeline benchmark on the code before a change and after it, alternately, for the README's before/after table.

Exports ``--before`` (a git ref that has the tubes stage; its ``toontalker_bench/`` and ``params.yaml`` only) into a temporary folder and runs
``python -m benchmarks.pipeline`` (this checkout's script) ``--rounds`` times for each side, alternating before/after,
each time in a fresh process with ``PYTHONPATH`` on that side's package and that side's ``params.yaml`` (its own
defaults). Every run measures its own decode-only speed back to back with its pipeline runs, so each ratio is
self-contained; the table takes the median of the runs' medians.

With ``--demo`` (the demo corpus, built by ``dvc repro``), it also times each side's align stage alone over the
demo corpus' face tubes (``data/tubes``: the same boxes, so the same crops, either side), one worker pinned to one
core, alternately: what decoding only the tubes' frames and converting only the crops saves.

    python -m benchmarks.pipeline_before_after --before f4e2b85 [--rounds 3] [--repeats 3] [--demo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def export(ref: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "toontalker_bench", "params.yaml"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def run_side(code: Path, params: Path, out: Path, repeats: int, seconds: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(REPO)])}
    subprocess.run([sys.executable, "-m", "benchmarks.pipeline", "--repeats", str(repeats), "--seconds",
                    str(seconds), "--landmarks", "default", "--params", str(params), "--out", str(out)],
                   check=True, env=env, cwd=out.parent)  # not REPO: `-m` puts the cwd first on sys.path
    res = json.loads(out.read_text())
    if Path(res["package"]).resolve() != (code / "toontalker_bench").resolve():
        raise SystemExit(f"measured {res['package']}, not {code}/toontalker_bench")
    return res


ALIGN = """
import json, os, sys, time, logging
os.environ["OMP_NUM_THREADS"] = "1"
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the pipeline benchmark
import cv2
cv2.setNumThreads(1)
from toontalker_bench.core.config import load_params
from toontalker_bench.data import align
from toontalker_bench.core.executors import LocalExecutor
logging.getLogger("toontalker_bench").setLevel(logging.WARNING)
p = load_params(sys.argv[1])
p.scrape.out_dir, p.tubes.out_dir, p.align.out_dir = sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
rep = align.run(p, LocalExecutor(1))
print(json.dumps({"wall_s": round(time.perf_counter() - t0, 3), "clips": rep["clips"],
                  "frames_decoded": rep["frames_decoded"], "package": align.__file__}))
"""


def run_align(code: Path, params: Path, raw: Path, tubes: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    res = subprocess.run([sys.executable, "-c", ALIGN, str(params), str(raw), str(tubes), str(out)], check=True,
                         env=env, cwd=out.parent, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git ref of the code before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--demo", action="store_true", help="also time each side's align stage over the demo corpus")
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--tubes", default="data/tubes")
    ap.add_argument("--out", default="benchmarks/results/pipeline_one_pass_before_after.json")
    args = ap.parse_args(argv)
    from toontalker_bench.core.io import write_json

    from .common import load_avg, machine

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report: dict = {"what": f"benchmarks/pipeline.py on the code before ({args.before}) and after (working tree at "
                            f"{commit}), alternately, {args.rounds} runs each of {args.repeats} timed rounds",
                    "machine": machine(), "before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        old.mkdir()
        export(args.before, old)
        for r in range(args.rounds):
            for side, code, params in (("before", old, old / "params.yaml"), ("after", REPO, REPO / "params.yaml")):
                res = run_side(code, params, Path(tmp) / f"{side}{r}.json", args.repeats, args.seconds)
                report[side].append(res)
                print(f"round {r} {side}: " + "; ".join(f"{x['video']} {x['ratio']['median']:.3f}x" for x in
                                                       res["results"]), flush=True)
        if args.demo:
            report["align_demo"] = {"before": [], "after": []}
            for r in range(args.rounds):
                for side, code, params in (("before", old, old / "params.yaml"), ("after", REPO, REPO / "params.yaml")):
                    res = run_align(code, params, Path(args.raw).resolve(), Path(args.tubes).resolve(),
                                    Path(tmp) / f"align-{side}{r}")
                    report["align_demo"][side].append(res)
                    print(f"align on the demo corpus, round {r} {side}: {res}", flush=True)
    summary = {}
    for side in ("before", "after"):
        for video in sorted({x["video"] for run in report[side] for x in run["results"]}):
            rows = [x for run in report[side] for x in run["results"] if x["video"] == video]
            summary[f"{side} {video}"] = {
                "ratio": round(statistics.median(x["ratio"]["median"] for x in rows), 3),
                "pipeline_fps": round(statistics.median(x["pipeline_fps"]["median"] for x in rows), 1),
                "decode_fps": round(statistics.median(x["decode_fps"]["median"] for x in rows), 1),
                **{f"{st}_s": round(statistics.median(x[f"{st}_s"]["median"] for x in rows), 3)
                   for st in ("tubes", "align")}}
    for side, runs in (report.get("align_demo") or {}).items():
        summary[f"{side} align, demo corpus"] = {"wall_s": round(statistics.median(x["wall_s"] for x in runs), 2),
                                                 "frames_decoded": runs[0]["frames_decoded"], "clips": runs[0]["clips"]}
    report["summary"] = summary
    report["load_avg_end"] = load_avg()
    write_json(args.out, report)
    for k, v in summary.items():
        print(k, v)
    return report


if __name__ == "__main__":
    main()
