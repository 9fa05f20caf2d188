"""Speed of the data pipeline's decoding stages (tubes + align) against decode-only, on one core.

Each video (generated: a real photograph of a face — skimage's ``astronaut``, NASA, public domain — drifting slowly
over a textured background, with hard cuts between shots) is decoded once on its own (PyAV, every frame converted to
RGB: what a stage that reads frames does at the least), then run through the stages' ``run`` functions exactly as
``dvc repro`` runs them (one worker, in-process: each stage reads its inputs, runs its jobs and writes its tables).
Reported per video: decode-only frames/s, pipeline frames/s and their ratio, plus each stage's seconds. The process is
pinned to one CPU and every library runs single-threaded. Each round times decode-only and then the pipeline once per
landmark setting, so every ratio compares timings taken back to back; figures are medians over ``--repeats`` rounds
(after one warm-up round), with n, min, max and every value kept. Peak memory is the process's max RSS (cumulative:
the 720p rows include the 360p runs). ``--profile`` adds one cProfile run per video, its time grouped by what it was
spent on.

The script also runs against another checkout of the package that has the tubes stage
(``PYTHONPATH=<other>:<this repo>``, ``--params <other>/params.yaml``).

    python -m benchmarks.pipeline [--seconds 10] [--repeats 5] [--landmarks default,2:linear] [--profile] [--out ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def make_video(path: Path, width: int, height: int, seconds: float, fps: float = 25.0) -> int:
    """A face drifting over a background, a hard cut every 4 s; returns the frame count."""
    import cv2
    from skimage import data

    from toontalker_bench.core.video import write_video

    face = data.astronaut()
    n = int(seconds * fps)
    rng = np.random.default_rng(0)
    side = int(height * 0.9)
    img = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)

    def frames():  # noqa: ANN202
        bg = None
        for i in range(n):
            if i % int(4 * fps) == 0:
                tile = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
                bg = cv2.resize(tile, (width, height), interpolation=cv2.INTER_NEAREST)
            f = bg.copy()
            x = int((width - side) * (0.4 + 0.03 * np.sin(i / 25)))
            y = (height - side) // 2
            f[y:y + side, x:x + side] = img
            yield f

    write_video(path, frames(), fps=fps)
    return n


def decode_only(path: Path) -> float:
    from toontalker_bench.core.video import iter_frames

    t0 = time.perf_counter()
    n = sum(1 for _ in iter_frames(path))
    return n / (time.perf_counter() - t0)


def write_sources(raw: Path, videos: list[tuple[str, Path, str]]) -> None:
    """A scrape table (``data/raw/sources.parquet``) for local videos ``(source_id, path, domain)``, hard-linked in."""
    import pandas as pd

    from toontalker_bench.core.io import write_table
    from toontalker_bench.core.video import probe
    from toontalker_bench.data.scrape import TABLE_COLUMNS

    raw.mkdir(parents=True, exist_ok=True)
    rows = []
    for sid, path, domain in videos:
        dest = raw / f"{sid}.mp4"
        if not dest.exists():
            try:
                os.link(path, dest)
            except OSError:
                dest.write_bytes(Path(path).read_bytes())
        info = probe(dest)
        rows.append({c: "" for c in TABLE_COLUMNS} | {
            "source_id": sid, "domain": domain, "identity": sid, "status": "ok", "path": dest.name,
            "start": float("nan"), "end": float("nan"), "width": info.width, "height": info.height, "fps": info.fps,
            "n_frames": info.n_frames, "box": ""})
    write_table(raw / "sources.parquet", pd.DataFrame(rows, columns=list(TABLE_COLUMNS)))


def run_stages(raw: Path, work: Path, params, executor=None) -> dict:  # noqa: ANN001 - Params, Executor
    """The decoding stages (tubes, then align) over ``raw``; seconds and report per stage."""
    from toontalker_bench.data import align, tubes

    params.scrape.out_dir = str(raw)
    params.tubes.out_dir, params.align.out_dir = str(work / "tubes"), str(work / "clips")
    order = (("tubes", tubes.run), ("align", align.run))
    out = {}
    for name, fn in order:
        t0 = time.perf_counter()
        rep = fn(params, executor)
        out[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        out[f"{name}_report"] = rep
    return out


def pipeline(path: Path, work: Path, params) -> dict:  # noqa: ANN001 - Params
    """The three stages on one source, one worker, in-process."""
    from toontalker_bench.core.executors import LocalExecutor
    from toontalker_bench.core.video import probe

    info = probe(path)
    raw = work / "raw"
    write_sources(raw, [("bench", path, "real")])
    t0 = time.perf_counter()
    res = run_stages(raw, work, params, LocalExecutor(1))
    total = time.perf_counter() - t0
    return {"frames": info.n_frames, "shots": res["tubes_report"]["shots"], "tubes": res["tubes_report"]["tubes"],
            "clips": res["align_report"]["clips"], **{k: v for k, v in res.items() if k.endswith("_s")},
            "fps": round(info.n_frames / total, 1)}


GROUPS = (  # what the time went to, by "<file name>:<function>" of cProfile's entries (first match wins)
    ("decode (PyAV)", ("video.py:decode", "video.py:iter_frames", "av.container.core.open", "demux", "_frame_table",
                       "video.py:plane")),
    ("face detection (RetinaFace)", ("onnxruntime", "detect.py:", "preprocess.py:", "postprocess.py:", "NMSBoxes")),
    ("landmark model (dlib)", ("landmarks.py:",)),
    ("landmark flow (LK)", ("calcOpticalFlowPyrLK", "flow.py:")),
    ("encode (x264)", ("'encode' of", "from_ndarray", "'mux' of")),
    ("RGB conversion (frames, crops)", ("to_ndarray", "_i420_rgb", "rgb_region")),
    ("crops, resizes", ("<resize>", "crop_square", "copyMakeBorder", "pad")),
    ("shot cuts (PySceneDetect)", ("scenedetect", "content_detector.py:", "adaptive_detector.py:", "cuts.py:",
                                   "<cvtColor>", "<split>")),
    ("tables, files", ("parquet", "arrow", "core.py:read", "zlib", "npyio", "_npyio", "json", "posix", "zipfile",
                       "io.py:", "write", "format.py:")),
)


def profile_once(path: Path, work: Path, params) -> dict:  # noqa: ANN001 - Params
    """One pipeline run under cProfile; its own time per function, summed into :data:`GROUPS`."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    pipeline(path, work, params)
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())
    groups: dict[str, float] = {}
    for (file, _, func), (_, _, tottime, _, _) in st.stats.items():
        name = f"{Path(file).name}:{func}"
        key = next((g for g, pats in GROUPS if any(p in name for p in pats)), "other (Python)")
        groups[key] = groups.get(key, 0.0) + tottime
    return {"total_s": round(total, 3), "by_group_s": {k: round(v, 3) for k, v in sorted(groups.items(),
                                                                                        key=lambda kv: -kv[1])}}


def _variants(spec: str, params) -> list[tuple[str, int, str]]:  # noqa: ANN001 - Params
    out = []
    for v in spec.split(","):
        if v == "default":
            out.append(("default", params.tubes.landmarks_every, params.tubes.landmarks_between))
        elif v:
            k, between = v.split(":")
            out.append((v, int(k), between))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per video (after one warm-up round)")
    ap.add_argument("--landmarks", default="default,2:linear",
                    help="landmark settings to time, comma-separated: default (params.yaml's) or k:linear|flow")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", action="store_true", help="also one cProfile run per video (default settings)")
    ap.add_argument("--sizes", default="640x360,1280x720")
    ap.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = ap.parse_args(argv)
    import copy

    import toontalker_bench
    from toontalker_bench.core.config import load_params
    from toontalker_bench.core.io import write_json

    from .common import load_avg, machine, peak_rss_mib, pin_one_core, summary

    pin_one_core()
    logging_quiet()
    params = load_params(args.params if Path(args.params).is_file() else None)
    variants = _variants(args.landmarks, params)
    report: dict = {"benchmark": "pipeline", "cores_used": 1, "machine": machine(), "repeats": args.repeats,
                    "package": str(Path(toontalker_bench.__file__).parent),
                    "detect_every": params.tubes.detect_every, "detect_max_side": params.tubes.detect_max_side,
                    "real_detector": params.tubes.real_detector, "align_size": params.align.size, "results": [],
                    "profiles": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            video = Path(tmp) / f"{h}p.mp4"
            make_video(video, w, h, args.seconds)
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
            decode: list[float] = []
            for r in range(args.repeats + 1):  # round 0 warms caches and model loads and is not counted
                dec = decode_only(video)
                for name, k, between in variants:
                    p = copy.deepcopy(params)
                    p.tubes.landmarks_every, p.tubes.landmarks_between = k, between
                    res = pipeline(video, Path(tmp) / f"r{h}-{r}-{name.replace(':', '_')}", p)
                    if r:
                        runs[name].append({**res, "ratio": res["fps"] / dec})
                if r:
                    decode.append(dec)
            for (name, k, between) in variants:
                rs = runs[name]
                row = {"video": f"{w}x{h}", "frames": rs[0]["frames"], "landmarks": name, "landmarks_every": k,
                       "landmarks_between": between, "shots": rs[0]["shots"], "tubes": rs[0]["tubes"],
                       "clips": rs[0]["clips"], "decode_fps": summary(decode, 1),
                       "pipeline_fps": summary([x["fps"] for x in rs], 1), "ratio": summary([x["ratio"] for x in rs]),
                       **{f"{st}_s": summary([x[f"{st}_s"] for x in rs]) for st in ("tubes", "align")},
                       "peak_rss_mib_so_far": peak_rss_mib(), "load_avg_after": load_avg()}
                report["results"].append(row)
                print(f"{w}x{h} landmarks {name} (every {k}, {between}): decode {row['decode_fps']['median']:.0f} fps, "
                      f"tubes+align {row['pipeline_fps']['median']:.0f} fps, ratio {row['ratio']['median']:.3f} "
                      f"(median of {args.repeats}; tubes {row['tubes_s']['median']}s"
                      f" align {row['align_s']['median']}s, {row['clips']} clips)", flush=True)
            if args.profile:
                prof = profile_once(video, Path(tmp) / f"prof{h}", copy.deepcopy(params))
                report["profiles"][f"{w}x{h}"] = prof
                print(f"{w}x{h} profile (cProfile, own time): " + ", ".join(
                    f"{g} {s:.3f}s" for g, s in prof["by_group_s"].items()), flush=True)
    report["peak_rss_mib"] = peak_rss_mib()
    report["load_avg_end"] = load_avg()
    write_json(args.out, report)
    return report


def logging_quiet() -> None:
    import logging

    logging.getLogger("toontalker_bench").setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
