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
  estimates), each measured, none adopted;
- ``estimators``: the ratio and both sides' errors under other expression readers fitted on the board map's own
  training rows and read from the same features (:func:`estimator_variants`: fitted on within-clip changes; each
  morph its own blocks and ridge; a Gaussian-kernel ridge), with their held-out reliabilities; with ``--vgg-block``
  also ``vgg_bands``, the board's map given one more feature block to choose: ImageNet VGG16 features of the aligned
  face's eye and mouth bands (:func:`vgg_band_features`).

``--cross-start any|neutral`` measures the cross-domain tasks on the pairs the protocol draws with that setting
(:mod:`toontalker_bench.data.protocol`; ``neutral``: driving windows that start with a closed mouth) instead of the
built ones.

    python -m benchmarks.expression_noise [--dataset data/dataset] [--cross-start built|any|neutral] [--vgg-block]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
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
from toontalker_bench.faces.motion_map import (BLOCKS, FEATURE_SETS, Designs, PoseVectorRidge, RidgeMap,
                                               aligned_faces, expression_weights, fit_ridges, group_folds,
                                               heldout_calibration, morph_calibration, motion_features)
from toontalker_bench.faces.pose import MORPHS, N_MORPHS
from toontalker_bench.metrics.motion import corpus_features, corpus_train_clips, motion_backend
from toontalker_bench.metrics.pair import resize_frames

TASKS = ("self_real", "self_cartoon", "real2cartoon", "cartoon2real")


def pairs_for(dataset: Path, spec: dict[str, Any], cross_start: str) -> pd.DataFrame:
    """The built protocol's pairs, or (``cross_start`` ``any`` or ``neutral``) its cross-domain pairs drawn again with
    that setting and the built protocol's other settings (``spec``: its ``protocol.json``)."""
    if cross_start == "built":
        return pd.read_parquet(dataset / "protocol" / "pairs.parquet")
    redrawn = protocol_pairs(pd.read_parquet(dataset / "clips.parquet"), dataset, spec, cross_start=cross_start)
    return redrawn[redrawn["task"].isin(["real2cartoon", "cartoon2real"])]


Extra = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def collect(dataset: Path, output_size: int, pairs: pd.DataFrame, extra: Extra | None = None) -> list[dict[str, Any]]:
    """Per protocol pair: the task, the motion features (:func:`~toontalker_bench.faces.motion_map.motion_features`,
    what the board's expression estimator reads, and ``extra``'s blocks) of the exact answer, of copying and of the
    driver, as the board analyses them, and the true morphs of the exact answer and the driver on the analysed
    frames."""
    table = clip_table(dataset)
    paths = dict(zip(table["clip_id"], table["path"]))
    ev = Evaluator.from_params(["aed_exp_rel"], EvalParams(), "cpu", motion_dataset=str(dataset))
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
                if key not in rec:
                    frames, lm = p.face_frames(which), p.faces(which).landmarks68
                    rec[key] = motion_features(frames, lm) | (extra(frames, lm) if extra else {})
        stride = n // len(rec["driving"]["angles"])
        rec["truth"] = {"exact": drawn[::stride, :N_MORPHS], "driving": truth[::stride, :N_MORPHS]}
        out.append(rec)
    return out


class Reader:
    """An expression estimator on motion features: per domain a predictor ``feats -> (T, 17)`` morphs and the
    per-morph reliabilities the metric weights by; the domain comes from the board's classifier."""

    def __init__(self, board: PoseVectorRidge, predict: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]],
                 reliability: dict[str, np.ndarray]) -> None:
        self.board, self.predictors, self.reliability = board, predict, reliability

    @classmethod
    def of_board(cls, board: PoseVectorRidge) -> Reader:
        def one(d: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
            return lambda f: board.predict(f, d)[0][:, :N_MORPHS]

        return cls(board, {d: one(d) for d in board.domains}, board.reliability)

    def read(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.all([np.isfinite(v).all(1) for v in feats.values()], axis=0)
        dom = self.board.domain_of(feats, ok)
        exp = np.full((len(ok), N_MORPHS), np.nan)
        if ok.any():
            exp[ok] = self.predictors[dom]({k: v[ok] for k, v in feats.items()})
        return {"exp": exp, "ok": ok, "w": expression_weights(self.reliability[dom])}


def read_all(recs: list[dict[str, Any]], reader: Reader) -> list[dict[str, Any]]:
    """The records with each side's features replaced by ``reader``'s estimates (``exp``, ``ok``, weights ``w``)."""
    return [{**r, **{k: reader.read(r[k]) for k in ("exact", "copy", "driving")}} for r in recs]


# ------------------------------------------------------------------------ a candidate feature block
# VGG16 taps on the 112-px aligned face: (tap, channels, rows, cols, grid): relu3_1 (28 px) and relu4_1 (14 px),
# average-pooled over the eye/brow band (rows 28-72 of 112) and the mouth band (rows 72-108) into small grids
_VGG_POOLS = ((2, 256, slice(7, 18), slice(4, 24), (2, 4)), (2, 256, slice(18, 27), slice(6, 22), (2, 3)),
              (3, 512, slice(3, 9), slice(2, 12), (1, 2)), (3, 512, slice(9, 14), slice(3, 11), (1, 1)))


@functools.cache
def _vgg() -> Any:
    from toontalker_bench.models.losses import _find_vgg, _VGGFeatures

    found = _find_vgg()
    if found is None:
        raise SystemExit("error: --vgg-block needs the VGG weights (toontalker-bench assets build lpips-vgg)")
    return _VGGFeatures(*found[:2]).float()


def vgg_band_features(frames: np.ndarray, landmarks68: np.ndarray) -> dict[str, np.ndarray]:
    """``{"vgg": (T, 5120)}``: ImageNet VGG16 (the perceptual loss's weights) features of the eye and mouth bands of
    each frame's face, aligned as the HOG block's; NaN rows where the 68 landmarks are incomplete."""
    import torch

    lm = np.asarray(landmarks68, np.float64)
    has = np.isfinite(lm).all(axis=(1, 2))
    dim = sum(ch * g[0] * g[1] for _, ch, _, _, g in _VGG_POOLS)
    out = np.full((len(lm), dim), np.nan)
    if has.any():
        faces = torch.from_numpy(aligned_faces(frames[has], lm[has])).float().div(255)[:, None].repeat(1, 3, 1, 1)
        with torch.no_grad():
            taps = _vgg()(faces)
        out[has] = torch.cat([torch.nn.functional.adaptive_avg_pool2d(taps[t][:, :, r, c], g).flatten(1)
                              for t, _, r, c, g in _VGG_POOLS], 1).double().numpy()
    return {"vgg": out}


# ------------------------------------------------------------------------ other estimators on the same features
def _within(x: np.ndarray, units: np.ndarray) -> np.ndarray:
    out = x.copy()
    for u in np.unique(units):
        out[units == u] -= x[units == u].mean(0)
    return out


def _calibrated(b: np.ndarray, gains: np.ndarray, raw: Callable[[dict[str, np.ndarray]], np.ndarray]
                ) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda f: b + (raw(f) - b) / gains


def _linear(m: RidgeMap, mu: np.ndarray) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A ridge map applied to raw features standardised with ``mu`` (the raw mean; a within fit's own mean is 0)."""
    def raw(f: dict[str, np.ndarray]) -> np.ndarray:
        if not m.blocks:
            return np.tile(m.b, (len(next(iter(f.values()))), 1))
        return ((np.concatenate([f[k] for k in m.blocks], axis=1) - mu) / m.sd * m.scale) @ m.w + m.b
    return raw


def _rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    d = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d, 0))


def estimator_variants(train: tuple[np.ndarray, ...], board: PoseVectorRidge) -> dict[str, Reader]:
    """Expression readers fitted on the board map's own training rows, each a change one might make to it:

    - ``within_face``: the ridge fitted on changes within a clip (features and morphs minus each clip's mean), the
      quantity the relative metrics read, instead of on absolute values across identities;
    - ``per_morph``: each morph its own feature blocks and ridge strength (the board shares them over the 17);
    - ``rbf_kernel``: kernel ridge with a Gaussian kernel on all feature blocks (width: the blocks' summed variance
      times 1 / 0.3, ridge 1), nonlinear where pose and identity bend the features."""
    feats, y, doms, groups, clips = train
    ok = np.isfinite(y).all(1) & np.all([np.isfinite(v).all(1) for v in feats.values()], axis=0)
    out: dict[str, tuple[dict, dict]] = {"within_face": ({}, {}), "per_morph": ({}, {}), "rbf_kernel": ({}, {})}
    for d in board.domains:
        rows = ok & (doms == d)
        f = {k: v[rows] for k, v in feats.items()}
        ym, g = y[rows, :N_MORPHS], groups[rows]
        raw_mu = {k: v.mean(0) for k, v in f.items()}

        def mu_of(blocks: tuple[str, ...]) -> np.ndarray:
            return np.concatenate([raw_mu[k] for k in blocks]) if blocks else np.zeros(0)

        # within-clip fit
        fw, yw = {k: _within(v, clips[rows]) for k, v in f.items()}, _within(ym, clips[rows])
        dw = Designs(fw)
        m = fit_ridges(dw, {"morphs": (yw, False)}, g)["morphs"][0]
        m = RidgeMap(m.blocks, m.lam, m.mu, m.sd, m.scale, m.w, ym.mean(0))
        gains, rel = morph_calibration(dw, m, yw, g)
        out["within_face"][0][d] = _calibrated(ym.mean(0), gains, _linear(m, mu_of(m.blocks)))
        out["within_face"][1][d] = rel
        # per-morph selection
        dp = Designs(f)
        fitted = fit_ridges(dp, {str(k): (ym[:, k:k + 1], False) for k in range(N_MORPHS)}, g)
        maps = [fitted[str(k)][0] for k in range(N_MORPHS)]
        cal = [morph_calibration(dp, mk, ym[:, k:k + 1], g) for k, mk in enumerate(maps)]
        gains, rel = np.array([c[0][0] for c in cal]), np.array([c[1][0] for c in cal])
        per = [_linear(mk, mu_of(mk.blocks)) for mk in maps]
        out["per_morph"][0][d] = _calibrated(ym.mean(0), gains,
                                             lambda x, per=per: np.concatenate([p(x) for p in per], 1))
        out["per_morph"][1][d] = rel
        # Gaussian kernel ridge
        a, mu, sd, scale = dp.design(BLOCKS)
        gamma, lam = 0.3 / (2 * len(BLOCKS)), 1.0
        k = _rbf(a, a, gamma)
        pred = np.empty_like(ym)
        for test in group_folds(g):
            alpha = np.linalg.solve(k[np.ix_(~test, ~test)] + lam * np.eye(int((~test).sum())),
                                    ym[~test] - ym[~test].mean(0))
            pred[test] = k[np.ix_(test, ~test)] @ alpha + ym[~test].mean(0)
        gains, rel = heldout_calibration(pred, ym, g)
        alpha = np.linalg.solve(k + lam * np.eye(len(k)), ym - ym.mean(0))

        def kernel(x: dict[str, np.ndarray], a=a, mu=mu, sd=sd, scale=scale, alpha=alpha, b=ym.mean(0)) -> np.ndarray:
            z = (np.concatenate([x[k] for k in BLOCKS], axis=1) - mu) / sd * scale
            return _rbf(z, a, gamma) @ alpha + b

        out["rbf_kernel"][0][d] = _calibrated(ym.mean(0), gains, kernel)
        out["rbf_kernel"][1][d] = rel
    return {name: Reader(board, pred, rel) for name, (pred, rel) in out.items()}


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
    ap.add_argument("--vgg-block", action="store_true",
                    help="also fit the board's map with a VGG16 eye/mouth block to choose (estimator vgg_bands)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default benchmarks/results/expression_noise[_any|_neutral].json")
    args = ap.parse_args()
    out_path = args.out or Path("benchmarks/results/expression_noise"
                                + ("" if args.cross_start == "built" else f"_{args.cross_start}") + ".json")
    backend = motion_backend(EvalParams().motion_backend, str(args.dataset))
    if getattr(backend, "model", None) is None:
        raise SystemExit(f"error: the board's expression estimator is not fitted on {args.dataset} ({backend.name})")
    spec = json.loads((args.dataset / "protocol" / "protocol.json").read_text())
    extra = vgg_band_features if args.vgg_block else None
    recs = collect(args.dataset, args.output_size, pairs_for(args.dataset, spec, args.cross_start), extra)
    train = corpus_features(corpus_train_clips(args.dataset)[1], extra=extra)
    readers = estimator_variants(train, backend.model)
    if args.vgg_block:
        sets = FEATURE_SETS + tuple((*fs, "vgg") for fs in FEATURE_SETS)
        readers["vgg_bands"] = Reader.of_board(PoseVectorRidge.fit(*train[:4], feature_sets=sets))
    estimators = {}
    for name, reader in readers.items():
        tasks = summarise(read_all(recs, reader))
        estimators[name] = {"reliability": {d: dict(zip(MORPHS, r.round(3).tolist()))
                                            for d, r in reader.reliability.items()},
                            **{t: {"ratio": v["ratio"], "generated_error": v["generated"]["error"],
                                   "driving_error": v["driving"]["error"]} for t, v in tasks.items()}}
    out = {"dataset_version": dataset_version(args.dataset), "backend": backend.name,
           "output_size": args.output_size,
           "cross_start": spec.get("cross_start", "any") if args.cross_start == "built" else args.cross_start,
           "what": __doc__.split("\n\n")[1].replace("\n", " "),
           "tasks": summarise(read_all(recs, Reader.of_board(backend.model))), "estimators": estimators,
           "machine": machine()}
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({t: {k: v[k] for k in ("ratio", "ratio_on_truth", "generated", "driving", "variants")}
                      for t, v in out["tasks"].items()}, indent=1))
    print(json.dumps({n: {t: v[t]["ratio"] for t in out["tasks"]} for n, v in estimators.items()}))


if __name__ == "__main__":
    main()
