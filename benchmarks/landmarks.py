"""Landmark accuracy and cost of the tubes stage's landmark settings, on the demo corpus' ground truth.

For each variant (``tubes.landmarks_every`` k and ``tubes.landmarks_between`` linear|flow) the tubes stage runs over
every demo source (``data/raw``, built by ``dvc repro``) on one core, in one process, and its 68 landmarks are
compared with the ground truth the corpus renders: NME = mean point-to-point error / outer-eye distance (points 36
and 45 of the ground truth), over every tube frame whose tube box matches the ground-truth face (``gt_box`` not
NaN) and whose ground-truth landmarks are all known; also the same error over the 20 mouth points (48-67) alone.
Reported per domain. Each round runs every variant once, back to back, so the timings compare; times are medians
over ``--repeats`` rounds, the tubes stage's own seconds (decoding, cuts, detection, landmarks) for the whole corpus.
Tubes must be identical across variants (landmarks do not decide tubes); the script checks it.

    python -m benchmarks.landmarks [--raw data/raw] [--repeats 3] [--variants 1:linear,2:linear,5:linear,5:flow]
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

MOUTH = slice(48, 68)


def nme(raw: Path, tubes_dir: Path) -> dict[str, dict[str, float]]:
    """Per domain: NME of all 68 points and of the mouth points, and the frame count."""
    import pandas as pd

    tubes = pd.read_parquet(tubes_dir / "tubes.parquet")
    sources = pd.read_parquet(raw / "sources.parquet").set_index("source_id")
    errs: dict[str, list[tuple[float, float]]] = {}
    gts: dict[str, pd.DataFrame] = {}
    for t in tubes.itertuples():
        gp = sources.loc[t.source_id, "gt_path"]
        if not gp:
            continue
        if t.source_id not in gts:
            gts[t.source_id] = pd.read_parquet(raw / gp).set_index("frame")
        gt = gts[t.source_id]
        with np.load(tubes_dir / "tracks" / f"{t.tube_id}.npz") as z:
            frames, pred, gt_box = z["frames"], z["landmarks68"], z["gt_box"]
        for f, p, gb in zip(frames, pred, gt_box):
            if np.isnan(gb).any() or f not in gt.index:
                continue
            g = np.asarray(gt.at[f, "landmarks"], np.float64).reshape(68, 2)
            if not np.isfinite(g).all():
                continue
            d = np.linalg.norm(g[36] - g[45])
            e = np.linalg.norm(p.astype(np.float64) - g, axis=1) / d
            errs.setdefault(t.domain, []).append((float(e.mean()), float(e[MOUTH].mean())))
    return {dom: {"nme": round(float(np.mean([a for a, _ in v])), 5),
                  "nme_mouth": round(float(np.mean([b for _, b in v])), 5), "frames": len(v)}
            for dom, v in sorted(errs.items())}


def run_variant(params, every: int, between: str, out: Path) -> float:  # noqa: ANN001 - Params
    from toontalker_bench.core.executors import LocalExecutor
    from toontalker_bench.data.tubes import stage

    params.tubes.landmarks_every, params.tubes.landmarks_between = every, between
    params.tubes.out_dir = str(out)
    t0 = time.perf_counter()
    res = stage.run(params, LocalExecutor(1))
    if res["sources_failed"]:
        raise SystemExit(f"tubes stage failed on {res['sources_failed']} sources with landmarks_every={every} "
                         f"landmarks_between={between}: see {out}/rejects.parquet")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default="1:linear,2:linear,5:linear,2:flow,5:flow")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="benchmarks/results/landmarks.json")
    args = ap.parse_args(argv)
    import pandas as pd

    from toontalker_bench.core.config import load_params
    from toontalker_bench.core.io import write_json

    from .common import load_avg, machine, pin_one_core, summary

    pin_one_core()
    raw = Path(args.raw)
    if not (raw / "sources.parquet").is_file():
        raise SystemExit(f"{raw}/sources.parquet not found: run `dvc repro` first (the demo corpus)")
    params = load_params(args.params if Path(args.params).is_file() else None)
    params.scrape.out_dir = str(raw)
    params.workers = 1
    variants = [(int(v.split(":")[0]), v.split(":")[1]) for v in args.variants.split(",") if v]
    report: dict = {"benchmark": "landmarks", "machine": machine(), "repeats": args.repeats, "raw": str(raw),
                    "detect_every": params.tubes.detect_every, "results": []}
    times: dict[tuple[int, str], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for v in variants:
                out = Path(tmp) / f"{v[0]}-{v[1]}"
                times[v].append(run_variant(params, *v, out / str(r)))
        ref_tubes = None
        for v in variants:
            out = Path(tmp) / f"{v[0]}-{v[1]}" / "0"
            tubes = pd.read_parquet(out / "tubes.parquet")
            if ref_tubes is None:
                ref_tubes = tubes
            row = {"landmarks_every": v[0], "landmarks_between": v[1], "faces_stage_s": summary(times[v], 2),
                   "tubes_identical_to_first_variant": bool(tubes.equals(ref_tubes)), **nme(raw, out)}
            report["results"].append(row)
            print(f"every {v[0]} {v[1]:6s}: tubes stage {row['faces_stage_s']['median']:.2f} s; "
                  + "; ".join(f"{d} NME {row[d]['nme']:.4f} mouth {row[d]['nme_mouth']:.4f} ({row[d]['frames']} fr)"
                              for d in ("cartoon", "real") if d in row), flush=True)
    report["load_avg_end"] = load_avg()
    write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
