"""How close to zero can the exact answer's ``aed_exp_rel`` get? The protocol's ground truth alone, no estimator.

Relative motion adds the driver's change since its first frame to the source's own expression, and the renderer draws
morphs only within [0, 1]: a source whose mouth is shut cannot shut it further. In self-reenactment the source frame
is the driver's first frame, so nothing is lost; across domains it is another face, and part of the driver's change
is clamped away. Per task, over every protocol pair, this measures with the ground-truth morphs (what a perfect
expression estimator would read): the exact answer's (oracle-render's) mean L1 distance to the driver's change, the
driver's change itself (what copying the source scores), and their ratio — the smallest ratio any estimator can
show, the floor under the board's oracle-render / copy-source figures.

    python -m benchmarks.expression_bound [--dataset data/dataset] [--out benchmarks/results/expression_bound.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import machine
from toontalker_bench.data.synth.oracle import clip_renderer, relative_motion
from toontalker_bench.data.version import dataset_version
from toontalker_bench.faces.pose import N_MORPHS


def measure(dataset: Path) -> dict[str, Any]:
    pairs = pd.read_parquet(dataset / "protocol" / "pairs.parquet")
    tasks: dict[str, Any] = {}
    for task, rows in pairs.groupby("task", sort=False):
        exact, copy = [], []
        for r in rows.itertuples():
            src, drv = clip_renderer(str(dataset), r.source_clip), clip_renderer(str(dataset), r.driving_clip)
            d = drv.motion[r.driving_start:r.driving_start + r.n_frames]
            drawn = src.clamp(r.source_frame, relative_motion(src.motion[r.source_frame], d))
            d_rel = (d - d[:1])[1:, :N_MORPHS]
            g_rel = (drawn - drawn[:1])[1:, :N_MORPHS]
            exact.append(float(np.abs(g_rel - d_rel).mean()))
            copy.append(float(np.abs(d_rel).mean()))
        tasks[str(task)] = {"pairs": len(rows), "exact_answer": round(float(np.mean(exact)), 5),
                            "copy_source": round(float(np.mean(copy)), 5),
                            "ratio": round(float(np.mean(exact) / np.mean(copy)), 3)}
    return {"dataset_version": dataset_version(dataset), "what": "aed_exp_rel on ground-truth morphs (all 17, "
            "unweighted): the exact relative answer vs copying the source", "tasks": tasks, "machine": machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/expression_bound.json"))
    args = ap.parse_args()
    out = measure(args.dataset)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["tasks"], indent=2))


if __name__ == "__main__":
    main()
