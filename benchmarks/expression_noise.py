"""Why the exact answer does not win ``aed_exp_rel`` by half everywhere: the estimator's error against the signal.

For every protocol pair this evaluates, as the board does (the default motion backend, 64-px outputs enlarged for
analysis, drivers read at the dataset's size), the exact answer (oracle-render, whose drawn morphs are known) and
copying the source, and compares each side's estimated expression change since the first frame with the ground
truth. Per task it reports

- ``ratio``: oracle-render's ``aed_exp_rel`` over copy-source's (the board's figure, target <= 0.5), and
  ``ratio_on_truth``, the same on the true morphs (all 17, unweighted, the analysed frames): the protocol's floor
  under ``ratio``, what a perfect expression reader would show;
- per side (``generated`` = the exact answer, ``driving``): ``error``, the reliability-weighted mean |estimated change
  - true change|, and ``signal``, the weighted mean |true change|. An estimator whose error exceeds the signal cannot
  tell the exact answer from a still face;
- ``per_morph``: for each morph the metric weights, its mean weight, the slope of estimated on true change and the
  mean error and signal on each side;
- ``variants``: the same ratio under changes one might make to the metric (the morph weights squared; weights as
  signal-to-noise ratios r^2 / (1 - r^2), r^2 capped at 0.9; mouth-open only; a 3-sample moving average of the
  estimates), each measured, none adopted.

``--cross-start any|neutral`` measures the cross-domain tasks on the pairs the protocol draws with that setting
(:mod:`toontalker_bench.data.protocol`; ``neutral``: driving windows that start with a closed mouth) instead of the
built ones.

    python -m benchmarks.expression_noise [--dataset data/dataset] [--cross-start built|any|neutral] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from benchmarks.common import machine
from toontalker_bench.core.config import EvalParams
from toontalker_bench.core.progress import progress
from toontalker_bench.core.video import read_frames
from toontalker_bench.data.dataset import clip_table
from toontalker_bench.data.protocol import protocol_pairs
from toontalker_bench.data.synth.oracle import answer, clip_renderer
from toontalker_bench.data.version import dataset_version
from toontalker_bench.eval.evaluator import Evaluator
from toontalker_bench.faces.pose import MORPHS, N_MORPHS
from toontalker_bench.metrics.motion import pair_motion
from toontalker_bench.metrics.pair import resize_frames

TASKS = ("self_real", "self_cartoon", "real2cartoon", "cartoon2real")


def pairs_for(dataset: Path, cross_start: str) -> pd.DataFrame:
    """The built protocol's pairs, or (``cross_start`` ``any`` or ``neutral``) its cross-domain pairs drawn again with
    that setting and the built protocol's other settings."""
    pairs = pd.read_parquet(dataset / "protocol" / "pairs.parquet")
    if cross_start == "built":
        return pairs
    spec = json.loads((dataset / "protocol" / "protocol.json").read_text())
    redrawn = protocol_pairs(pd.read_parquet(dataset / "clips.parquet"), dataset, spec, cross_start=cross_start)
    return redrawn[redrawn["task"].isin(["real2cartoon", "cartoon2real"])]


def collect(dataset: Path, output_size: int, pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per protocol pair: the task, the estimates (``exp``, ``ok``, ``w``) of the exact answer, of copying and of the
    driver, and the true morphs of the exact answer and the driver on the analysed frames."""
    table = clip_table(dataset)
    paths = dict(zip(table["clip_id"], table["path"]))
    ep = EvalParams()
    ev = Evaluator.from_params(["aed_exp_rel"], ep, "cpu", motion_dataset=str(dataset))
    out = []
    for i, r in enumerate(progress(list(pairs.itertuples()), desc="expression noise: pairs", unit="pair")):
        n = int(r.n_frames)
        drv = read_frames(dataset / paths[r.driving_clip], r.driving_start, r.driving_start + n)
        src = read_frames(dataset / paths[r.source_clip], r.source_frame, r.source_frame + 1)
        exact, drawn = answer(dataset, r.source_clip, int(r.source_frame), r.driving_clip, int(r.driving_start), n)
        truth = clip_renderer(str(dataset), r.driving_clip).motion[r.driving_start:r.driving_start + n]
        rec: dict[str, Any] = {"task": str(r.task)}
        for name, gen in (("exact", exact), ("copy", np.repeat(src, n, 0))):
            g, d, s = (resize_frames(x, output_size) for x in (gen, drv, src))
            p = ev.pair(g, d, s[0], f"{i}:{name}", full={"driving": drv, "source": src[0]})
            for which, key in (("generated", name), ("driving", "driving")):
                e = pair_motion(p, which, ep.motion_backend, str(dataset))
                rec[key] = {"exp": e.exp, "ok": e.ok, "w": np.asarray(e.extra["exp_weights"]), "backend": e.backend}
        stride = n // len(rec["driving"]["ok"])
        rec["truth"] = {"exact": drawn[::stride, :N_MORPHS], "driving": truth[::stride, :N_MORPHS]}
        out.append(rec)
    return out


def _changes(x: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Changes since the first usable frame, and the frames compared (usable, not that first one)."""
    ref = int(np.flatnonzero(ok)[0])
    use = ok.copy()
    use[ref] = False
    return x - x[ref], use


def _ratio(recs: list[dict[str, Any]], weigh: Callable[[dict[str, Any], str], np.ndarray], smooth: int = 1) -> float:
    """oracle-render's ``aed_exp_rel`` over copy-source's, under a weighting and optional moving average."""
    from scipy.ndimage import uniform_filter1d

    means = {}
    for side in ("exact", "copy"):
        per = []
        for r in recs:
            ok = r[side]["ok"] & r["driving"]["ok"]
            if ok.sum() < 2:
                continue
            gen, drv = r[side]["exp"], r["driving"]["exp"]
            if smooth > 1:  # frames without a usable face take the pair's mean first, so no NaN spreads
                gen, drv = (uniform_filter1d(np.where(ok[:, None], x, x[ok].mean(0)), smooth, axis=0, mode="nearest")
                            for x in (gen, drv))
            (dg, use), (dd, _) = _changes(gen, ok), _changes(drv, ok)
            w = weigh(r, side)
            w = w * (len(w) / w.sum())
            per.append(float((np.abs(dg - dd)[use] * w).mean()))
        means[side] = float(np.mean(per))
    return round(means["exact"] / means["copy"], 3)


def _truth_ratio(recs: list[dict[str, Any]]) -> float:
    exact = [np.abs((r["truth"]["exact"] - r["truth"]["exact"][0]) - (r["truth"]["driving"] - r["truth"]["driving"][0]))
             [1:].mean() for r in recs]
    copy = [np.abs(r["truth"]["driving"] - r["truth"]["driving"][0])[1:].mean() for r in recs]
    return round(float(np.mean(exact) / np.mean(copy)), 3)


def summarise(recs: list[dict[str, Any]]) -> dict[str, Any]:
    def weights(r: dict[str, Any], side: str) -> np.ndarray:
        return np.minimum(r[side]["w"], r["driving"]["w"])

    def snr(w: np.ndarray) -> np.ndarray:  # the weights are r^2
        w = np.minimum(w, 0.9)
        return w / (1 - w)

    mouth = np.array([m == "mouth_open" for m in MORPHS], float)
    tasks: dict[str, Any] = {}
    for task in TASKS:
        mine = [r for r in recs if r["task"] == task]
        if not mine:
            continue
        w = np.mean([weights(r, "exact") / weights(r, "exact").sum() * N_MORPHS for r in mine], 0)
        sides: dict[str, Any] = {}
        morph: dict[str, dict[str, Any]] = defaultdict(dict)
        for side in ("exact", "driving"):
            est, true = [], []
            for r in mine:
                ok = r["exact"]["ok"] & r["driving"]["ok"]
                (de, use), (dt, _) = _changes(r[side]["exp"], ok), _changes(r["truth"][side], ok)
                est.append(de[use])
                true.append(dt[use])
            de, dt = np.concatenate(est), np.concatenate(true)
            err, sig = np.abs(de - dt).mean(0), np.abs(dt).mean(0)
            slope = (de * dt).sum(0) / np.maximum((dt ** 2).sum(0), 1e-12)
            name = "generated" if side == "exact" else side
            sides[name] = {"error": round(float((err * w).mean()), 4), "signal": round(float((sig * w).mean()), 4)}
            for k, m in enumerate(MORPHS):
                if w[k] >= 0.05:
                    morph[m] |= {"weight": round(float(w[k]), 2), f"{name}_slope": round(float(slope[k]), 2),
                                 f"{name}_error": round(float(err[k]), 3), f"{name}_signal": round(float(sig[k]), 3)}
        tasks[task] = {"pairs": len(mine), "ratio": _ratio(mine, weights), "ratio_on_truth": _truth_ratio(mine),
                       **sides, "per_morph": dict(morph),
                       "variants": {"weights_squared": _ratio(mine, lambda r, s: weights(r, s) ** 2),
                                    "weights_snr": _ratio(mine, lambda r, s: snr(weights(r, s))),
                                    "mouth_open_only": _ratio(mine, lambda r, s: mouth),
                                    "moving_average_3": _ratio(mine, weights, smooth=3)}}
    return tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--output-size", type=int, default=64, help="the methods' output size the board reads")
    ap.add_argument("--cross-start", choices=("built", "any", "neutral"), default="built",
                    help="built: the built protocol's pairs; any/neutral: its cross-domain pairs drawn again so")
    ap.add_argument("--out", type=Path, default=None,
                    help="default benchmarks/results/expression_noise[_neutral].json")
    args = ap.parse_args()
    out_path = args.out or Path("benchmarks/results/expression_noise"
                                + ("" if args.cross_start == "built" else f"_{args.cross_start}") + ".json")
    recs = collect(args.dataset, args.output_size, pairs_for(args.dataset, args.cross_start))
    out = {"dataset_version": dataset_version(args.dataset), "backend": recs[0]["driving"]["backend"],
           "output_size": args.output_size,
           "cross_start": json.loads((args.dataset / "protocol" / "protocol.json").read_text()).get("cross_start", "any")
           if args.cross_start == "built" else args.cross_start,
           "what": __doc__.split("\n\n")[1].replace("\n", " "),
           "tasks": summarise(recs), "machine": machine()}
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({t: {k: v[k] for k in ("ratio", "ratio_on_truth", "generated", "driving", "variants")}
                      for t, v in out["tasks"].items()}, indent=1))


if __name__ == "__main__":
    main()
