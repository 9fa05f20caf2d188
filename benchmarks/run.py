"""Run the benchmark scripts, merge their JSON into ``benchmarks/results.json``, print a table (``make bench``).

Each script measures its own ratios against a reference in the same run (decode-only for the pipeline, pytorch-fid's
code path for FID) and reports medians of repeated runs; this runner only sequences them, records the machine and its
load, and prints one table for the README's "Performance" section. ``--only`` runs a subset; the other scripts' last
JSON is merged as it is (each names its own date), and the table marks those rows as from an earlier run.

    python -m benchmarks.run [--only pipeline,metrics] [--model-profiles tiny,paper] [--table]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import load_avg, machine

RESULTS = Path("benchmarks/results")
MERGED = Path("benchmarks/results.json")


def _scripts(model_profiles: str) -> dict[str, list[str]]:
    return {
        "pipeline": ["benchmarks.pipeline", "--profile"],
        "landmarks": ["benchmarks.landmarks"],
        "scaling": ["benchmarks.scaling"],
        "metrics": ["benchmarks.metrics", "--n", "200"],
        "evaluation": ["benchmarks.evaluation"],
        "models": ["benchmarks.models", "--methods", "toontalker,fomm,animeceleb", "--profiles", model_profiles],
        "demo": ["benchmarks.demo"],
    }


def _med(x: Any) -> Any:
    return x["median"] if isinstance(x, dict) else x


def table(res: dict[str, Any]) -> str:
    """The README table: machine, then one row per figure (medians; n repeats)."""
    m = res["machine"]
    rows = [("machine", f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, torch {m['torch']}, "
                        f"Python {m['python']}; load avg {m['load_avg'][0]} at start, {res['load_avg_end'][0]} at end")]
    stale = set(res.get("from_earlier_run", []))

    def mark(name: str) -> str:
        return " (earlier run)" if name in stale else ""

    pipe = res.get("pipeline")
    if pipe:
        for r in pipe["results"]:
            k = r.get("landmarks_every", 1)
            knob = f"landmarks_every={k} {r.get('landmarks_between', 'linear')}"
            if r.get("landmarks") == "default":
                knob += " (default)"
            # the stages the measured code ran (results are stored with sorted keys; align runs last)
            stages = sorted((k.removesuffix("_s") for k in r if k.endswith("_s")), key=lambda st: st == "align")
            seconds = ", ".join(f"{st} {_med(r[f'{st}_s'])} s" for st in stages)
            rows.append((f"pipeline ({'+'.join(stages)}) vs decode-only, {r['video']}, 1 core, {knob}{mark('pipeline')}",
                         f"{_med(r['ratio']):.3f}× ({_med(r['pipeline_fps']):.0f} vs {_med(r['decode_fps']):.0f} "
                         f"frames/s; {seconds} per {r['frames']} frames; median of {r['ratio']['n']})"))
        for video, prof in (pipe.get("profiles") or {}).items():
            top = ", ".join(f"{g} {t:.2f} s" for g, t in sorted(prof["by_group_s"].items(), key=lambda kv: -kv[1]))
            rows.append((f"pipeline profile, {video}, defaults (cProfile own time){mark('pipeline')}",
                         f"{prof['total_s']:.2f} s: {top}"))
        rows.append((f"pipeline benchmark peak memory{mark('pipeline')}", f"{pipe['peak_rss_mib']:.0f} MiB max RSS"))
    lms = res.get("landmarks")
    if lms:
        for r in lms["results"]:
            nme = "; ".join(f"{d} NME {r[d]['nme']:.4f} (mouth {r[d]['nme_mouth']:.4f}, {r[d]['frames']} frames)"
                            for d in ("cartoon", "real") if d in r)
            rows.append((f"landmarks every {r['landmarks_every']} + {r['landmarks_between']}, demo corpus, 1 core"
                         f"{mark('landmarks')}", f"faces stage {_med(r['faces_stage_s']):.2f} s; {nme}"))
    sc = res.get("scaling")
    if sc:
        for part in ("demo", "long"):
            x = sc.get(part)
            if x:
                loads = [run[f"w{w}"][k][0] for run in x["runs"] for w in (1, 2) for k in ("load_before", "load_after")]
                rows.append((f"faces+shots+align, 2 workers vs 1, {part} ({x['frames']} frames, {x['faces_jobs']} faces "
                             f"jobs){mark('scaling')}", f"{_med(x['ratio']):.2f}× ({_med(x['fps_2_workers']):.0f} vs "
                             f"{_med(x['fps_1_worker']):.0f} frames/s; median of {x['ratio']['n']}; load "
                             f"{min(loads)}-{max(loads)}; the job split allows {_med(x['split_allows']):.2f}×; two "
                             f"independent processes got {_med(x['machine_2proc']):.2f}× of one on the machine then)"))
        for k, m in (sc.get("memory") or {}).items():
            rows.append((f"peak memory, {k} of 720p, all three stages, 1 worker{mark('scaling')}",
                         f"{m['peak_rss_mib']:.0f} MiB max RSS ({m['frames']} frames, {m.get('tubes', 0)} tubes, "
                         f"{m.get('clips', 0)} clips, {m['wall_s']} s)"))
    met = res.get("metrics")
    if met:
        speeds = ", ".join(f"{k} {_med(v['images_per_s']):.1f}" for k, v in met["per_metric"].items()
                           if v["images_per_s"] is not None)
        skipped = ", ".join(k for k, v in met["per_metric"].items() if v["images_per_s"] is None)
        rows.append((f"metric throughput, images/s, CPU{mark('metrics')}",
                     speeds + (f" (not run: {skipped}, asset missing)" if skipped else "")
                     + f"; median of {met.get('repeats', 1)}"))
        f = met["fid_features"]
        rows.append((f"FID features vs pytorch-fid's code path, {f['n_images']} images{mark('metrics')}",
                     f"{_med(f['ratio']):.2f}× faster ({f['images_per_s_ours']} vs {f['images_per_s_pytorch_fid']} "
                     f"images/s; median of {f.get('repeats', 1)}); cached {f['ratio_cached']}×"))
        if "peak_rss_mib" in met:
            rows.append((f"metrics benchmark peak memory{mark('metrics')}", f"{met['peak_rss_mib']:.0f} MiB max RSS"))
    ev = res.get("evaluation")
    if ev:
        sec = ev["seconds_per_pair"]
        rows.append((f"evaluation per pair, {ev['frames']} frames at 64 px, self metrics, face analysis at 64 px "
                     f"(before) vs 256 px every 2nd frame (after){mark('evaluation')}",
                     f"{_med(sec['before']):.2f} s before; after {_med(sec['after_cold']):.2f} s with an empty cache "
                     f"({ev['ratio_after_cold_vs_before']}×), {_med(sec['after_warm']):.2f} s with the driving/source "
                     f"analyses cached ({ev['ratio_after_warm_vs_before']}×); median of {sec['before']['n']}"))
    for r in (res.get("models") or {}).get("results", []):
        step = r.get("train_step_s_median")
        where = r["device"] + (f" ({r['gpu']}, AMP {r['amp']})" if r.get("gpu") else "")
        rows.append((f"{r['method']} / {r['profile']} on {where} (measured {r['date'][:16]}Z){mark('models')}",
                     (f"train step {step} s (batch {r['train_batch_per_domain']}/domain, median of "
                      f"{len(r['train_step_s_all'])}); " if step is not None else "not trainable; ")
                     + (f"inference {r['animate_fps']} frames/s"
                        + (f" ({r['animate_domains']}); " if r.get("animate_domains") else "; ")
                        if r["animate_fps"] is not None else "inference not timed (see animate_note); ")
                     + f"peak {r['peak_memory_mib']:.0f} MiB "
                       f"({r['peak_memory_kind']})"))
    demo = res.get("demo")
    rows.append((f"`make demo` wall time{mark('demo')}",
                 f"{demo['wall_s']} s = {demo['wall_s'] // 60:.0f} min {demo['wall_s'] % 60:.0f} s ({demo['source']})"
                 if demo else
                 "not measured in this run (BENCH_DEMO=1 or BENCH_DEMO_LOG=<log>, see benchmarks/demo.py)"))
    return "\n".join(["| what | figure |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="",
                    help="comma-separated subset of: pipeline, landmarks, scaling, metrics, evaluation, models, demo")
    ap.add_argument("--model-profiles", default="tiny,paper")
    ap.add_argument("--table", action="store_true", help="only print the table of the existing results.json")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(MERGED.read_text())))
        return 0
    from toontalker_bench.core.io import write_json

    scripts = _scripts(args.model_profiles)
    only = [s for s in args.only.split(",") if s] or list(scripts)
    unknown = sorted(set(only) - set(scripts))
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(scripts)}")
    merged: dict[str, Any] = {"machine": machine(), "from_earlier_run": []}
    failed = []
    for name, argv_ in scripts.items():
        path = RESULTS / f"{name}.json"
        fresh = False
        if name in only:
            print(f"== {name}: python -m {' '.join(argv_)}", flush=True)
            before = path.stat().st_mtime_ns if path.is_file() else None
            t0 = time.perf_counter()
            if subprocess.call([sys.executable, "-m", *argv_]) != 0:
                failed.append(name)
            merged[f"{name}_wall_s"] = round(time.perf_counter() - t0, 1)
            fresh = path.is_file() and path.stat().st_mtime_ns != before
        if not path.is_file():
            continue
        if not fresh:  # not run, failed, or measured nothing (demo): the earlier JSON, which names its own date
            merged["from_earlier_run"].append(name)
        merged[name] = json.loads(path.read_text())
    merged["load_avg_end"] = load_avg()
    write_json(MERGED, merged)
    print(f"wrote {MERGED}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print(table(merged))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
