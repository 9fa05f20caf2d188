"""Speed of shots + faces + align against decode-only, on one core, for a 360p and a 720p video.

Each video (generated: a real photograph of a face — skimage's ``astronaut``, NASA, public domain — drifting slowly
over a textured background, with hard cuts between shots) is decoded once on its own, then run through the three
stages' per-source functions exactly as the pipeline does (each stage decodes the video once). Reported per video:
decode-only frames/s, pipeline frames/s and their ratio, plus each stage's seconds. The process is pinned to one CPU
and every library runs single-threaded. Each round times decode-only and then the pipeline once per
``faces.landmarks_every`` value, so every ratio compares timings taken back to back; figures are medians over
``--repeats`` rounds (after one warm-up round), with n, min, max and every value kept. Peak memory is the process's
max RSS (cumulative: the 720p rows include the 360p runs).

    python -m benchmarks.pipeline [--seconds 10] [--repeats 5] [--landmarks-every 1,5] [--out ...pipeline.json]
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

    from toontalker_bench.video import write_video

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
    from toontalker_bench.video import iter_frames

    t0 = time.perf_counter()
    n = sum(1 for _ in iter_frames(path))
    return n / (time.perf_counter() - t0)


def pipeline(path: Path, work: Path, params) -> dict:  # noqa: ANN001 - Params
    """shots -> faces -> align on one source, each stage's own per-source function."""
    import pandas as pd

    from toontalker_bench.data import align
    from toontalker_bench.data.faces import stage as faces
    from toontalker_bench.data.shots import detect_shots
    from toontalker_bench.video import probe

    info = probe(path)
    t0 = time.perf_counter()
    shots = detect_shots(path, params.shots)["shots"]
    t1 = time.perf_counter()
    source = {"source_id": "bench", "domain": "real", "identity": "astronaut"}
    params.faces.out_dir = str(work / "faces")
    job = faces.SourceJob(source, [(k, a, b) for k, (a, b) in enumerate(shots)], str(path), "", params.faces,
                          params.faces.out_dir, "bench")
    part = faces.process_source(job)
    t2 = time.perf_counter()
    params.align.out_dir = str(work / "clips")
    tubes = pd.DataFrame(part["tubes"]).to_dict("records")
    clips = 0
    if tubes:
        res = align.process_source(align.AlignJob("bench", str(path), info.fps, tubes, params.faces.out_dir,
                                                  params.align, "bench"))
        clips = len(res["clips"])
    t3 = time.perf_counter()
    return {"frames": info.n_frames, "shots": len(shots), "tubes": len(tubes), "clips": clips,
            "shots_s": round(t1 - t0, 3), "faces_s": round(t2 - t1, 3), "align_s": round(t3 - t2, 3),
            "fps": round(info.n_frames / (t3 - t0), 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per video (after one warm-up round)")
    ap.add_argument("--landmarks-every", default="1,2,5",
                    help="faces.landmarks_every values to time, comma-separated (1 = dlib on every frame)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = ap.parse_args(argv)
    import cv2

    from toontalker_bench.config import load_params
    from toontalker_bench.io import write_json

    from .common import load_avg, machine, peak_rss_mib, summary

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    params = load_params(args.params if Path(args.params).is_file() else None)
    variants = [int(k) for k in args.landmarks_every.split(",") if k]
    report: dict = {"benchmark": "pipeline", "cores_used": 1, "machine": machine(), "repeats": args.repeats,
                    "detect_every": params.faces.detect_every, "detect_max_side": params.faces.detect_max_side,
                    "real_detector": params.faces.real_detector, "align_size": params.align.size, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((640, 360), (1280, 720)):
            video = Path(tmp) / f"{h}p.mp4"
            make_video(video, w, h, args.seconds)
            runs: dict[int, list[dict]] = {k: [] for k in variants}
            decode: list[float] = []
            for r in range(args.repeats + 1):  # round 0 warms caches and model loads and is not counted
                dec = decode_only(video)
                for k in variants:
                    params.faces.landmarks_every = k
                    res = pipeline(video, Path(tmp) / f"r{h}-{r}-{k}", params)
                    if r:
                        runs[k].append({**res, "ratio": res["fps"] / dec})
                if r:
                    decode.append(dec)
            for k, rs in runs.items():
                row = {"video": f"{w}x{h}", "frames": rs[0]["frames"], "landmarks_every": k,
                       "shots": rs[0]["shots"], "tubes": rs[0]["tubes"], "clips": rs[0]["clips"],
                       "decode_fps": summary(decode, 1), "pipeline_fps": summary([x["fps"] for x in rs], 1),
                       "ratio": summary([x["ratio"] for x in rs]),
                       **{f"{st}_s": summary([x[f"{st}_s"] for x in rs]) for st in ("shots", "faces", "align")},
                       "peak_rss_mib_so_far": peak_rss_mib(), "load_avg_after": load_avg()}
                report["results"].append(row)
                print(f"{w}x{h} landmarks_every={k}: decode {row['decode_fps']['median']:.0f} fps, shots+faces+align "
                      f"{row['pipeline_fps']['median']:.0f} fps, ratio {row['ratio']['median']:.3f} "
                      f"(median of {args.repeats}; shots {row['shots_s']['median']}s faces {row['faces_s']['median']}s"
                      f" align {row['align_s']['median']}s, {row['clips']} clips)", flush=True)
    report["peak_rss_mib"] = peak_rss_mib()
    report["load_avg_end"] = load_avg()
    write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
