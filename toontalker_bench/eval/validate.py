"""Validate the metrics against the demo corpus, whose motion and identities are known; write the report.

Figures (per domain): pose MAE in degrees of the 3DMM fit vs ground-truth yaw/pitch/roll; expression: a ridge probe
from the 10-D expression code to the 17 ground-truth morphs, fitted on train clips, Pearson r on test clips; FID(X, X),
FID between two disjoint halves, and FID against blurred / noisy copies at growing strength; identity ROC AUC of
same- vs different-identity embedding similarity per backend. Frames come from the built dataset (aligned clips +
``.npz`` motion) when it exists, else from the demo corpus videos (``<video>.mp4`` + ``<video>.gt.parquet``),
cropped around the ground-truth box the way the align stage does.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Params
from ..data.dataset import Clip, load_clips
from ..errors import AssetError, DatasetError
from ..io import write_json, write_text
from ..progress import progress
from ..faces.analyzer import FaceAnalyzer
from ..faces.bfm import default_bfm

log = logging.getLogger(__name__)

SIZE = 256
BLUR_SIGMAS = (1.0, 2.0, 4.0)
NOISE_STDS = (0.04, 0.08, 0.16)

# What a metric must show on the demo corpus before the leaderboard presents it without a marker, per domain.
POSE_MAE_TARGET_DEG = 3.0  # apd_deg, apd_rel_deg
EXPRESSION_R_TARGET = 0.6  # aed_exp, aed_exp_rel: the expression probe's mean Pearson r
IDENTITY_AUC_TARGET = 0.9  # csim, aed_id: same- vs different-identity ROC AUC of the embeddings


def _domains(metric: str, task: str) -> tuple[str, ...]:
    """The domains a metric's estimator must be valid on for a task: motion metrics read generated (= source
    domain) and driving frames; identity and distribution metrics the generated (and source) frames."""
    from ..domains import TASKS

    src, drv = TASKS[task]
    return tuple(dict.fromkeys((src, drv))) if metric.startswith(("apd", "aed_exp", "akd")) else (src,)


def _on(domains: list[str]) -> str:
    return f" on {', '.join(domains)}" if domains else ""


def validation_problems(report: dict[str, Any] | None, metric: str, task: str) -> list[str]:
    """Why ``metric`` is not validated for ``task`` by ``report`` (the machine-readable validation figures); empty
    when it is, or when the metric needs no validation (pixel metrics, which compare frames directly)."""
    if metric in ("l1", "psnr", "ssim", "lpips", "face_miss_rate"):
        return []
    if report is None:
        return ["no metric validation report"]
    out = []
    sens = report.get("metrics", {}).get(metric)
    if sens is not None:  # the verdicts of the domains the task reads (the overall ones from an older report)
        verdicts = {d: sens["domains"][d] for d in _domains(metric, task) if d in sens.get("domains", {})} or {"": sens}
        for key, default, what in (("monotone", False, "does not grow monotonically with its own injected error"),
                                   ("flat", True, "answers to errors it should ignore (sensitivity suite)")):
            failed = [d for d, v in verdicts.items() if not v.get(key, default)]
            if failed:
                out.append(what + _on([d for d in failed if d]))
    for d in _domains(metric, task):
        if metric.startswith("apd"):
            mae = report.get("pose_mae_deg", {}).get(d)
            if mae is None or mae > POSE_MAE_TARGET_DEG:
                out.append(f"pose MAE {_f(mae, 1)} deg > {POSE_MAE_TARGET_DEG:g} on {d}")
        elif metric.startswith("aed_exp"):
            r = report.get("expression_probe_r", {}).get(d)
            if r is None or r < EXPRESSION_R_TARGET:
                out.append(f"expression probe r {_f(r)} < {EXPRESSION_R_TARGET:g} on {d}")
        elif metric in ("csim", "aed_id"):
            auc = report.get("identity_auc", {}).get(d)
            if auc is None or auc < IDENTITY_AUC_TARGET:
                out.append(f"identity AUC {_f(auc, 3)} < {IDENTITY_AUC_TARGET:g} on {d}")
    return out


def annotate(value: Any, task: str, report_path: str | None) -> None:  # noqa: ANN401 - a MetricValue
    """Mark ``value`` (``extra["validation"]``) "not validated on this data" when its validation misses a target."""
    import json

    report = None
    if report_path and Path(report_path).is_file():
        report = json.loads(Path(report_path).read_text())
    problems = validation_problems(report, value.name, task)
    if problems:
        value.extra["validation"] = "not validated on this data: " + "; ".join(problems)


# ------------------------------------------------------------------------------------------------ loading
def _pick(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _split_of(identity: str) -> str:
    """Identity-disjoint split, stable across runs: a third of the identities are test."""
    return "test" if zlib.crc32(identity.encode()) % 3 == 0 else "train"


def _square_crop(frame: np.ndarray, box: np.ndarray, increase: float = 0.4) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``increase`` per side (edge-padded), resized to 256."""
    from PIL import Image

    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * increase)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    pad = int(side)
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    a, b = int(round(cx - side / 2)) + pad, int(round(cy - side / 2)) + pad
    s = int(round(side))
    crop = padded[b:b + s, a:a + s]
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BICUBIC))


def load_synth_clips(root: Path, max_clips: int, frames_per_clip: int) -> list[Clip]:
    """One clip per (video, shot) with a face; frames sampled evenly and cropped around the ground-truth box."""
    import pandas as pd

    from ..video import read_frames

    per_domain: dict[str, list[Clip]] = {}
    for gt_path in sorted(root.glob("*.gt.parquet")):
        gt = pd.read_parquet(gt_path)
        video = gt_path.with_name(gt_path.name.replace(".gt.parquet", ".mp4"))
        if not video.is_file():
            continue
        wanted = []
        usable = gt["has_face"] & np.isfinite(gt[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float)).all(1)
        for (shot, identity), rows in gt[usable].groupby(["shot", "identity"], sort=True):
            domain = str(rows["domain"].iloc[0])
            if len(per_domain.get(domain, [])) + len([w for w in wanted if w[2] == domain]) >= max_clips:
                continue
            wanted.append((shot, identity, domain, rows.iloc[_pick(len(rows), frames_per_clip)]))
        if not wanted:
            continue
        frames = read_frames(video)
        for shot, identity, domain, rows in wanted:
            boxes = rows[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float)
            crops = np.stack([_square_crop(frames[f], b) for f, b in zip(rows["frame"].to_numpy(), boxes)])
            clip = Clip(f"{video.stem}-s{shot}", domain, str(identity), _split_of(str(identity)), crops,
                        np.stack(rows["motion"].to_numpy()).astype(np.float64))
            per_domain.setdefault(domain, []).append(clip)
    return [c for d in sorted(per_domain) for c in per_domain[d]]


def validation_clips(params: Params, dataset_dir: str | None, max_clips: int, frames_per_clip: int
                     ) -> tuple[list[Clip], str]:
    """Clips of the built dataset when it exists, else of the demo corpus, and which of the two it was."""
    ds = Path(dataset_dir or params.build.out_dir)
    if (ds / "clips.parquet").is_file():
        return load_clips(ds, size=SIZE, max_clips=max_clips, frames_per_clip=frames_per_clip), f"built dataset {ds}"
    synth = Path(dataset_dir or params.synth.out_dir)
    if any(synth.glob("*.gt.parquet")):
        return load_synth_clips(synth, max_clips, frames_per_clip), f"demo corpus {synth}"
    raise DatasetError(f"no built dataset ({ds}/clips.parquet) and no demo corpus ({synth}/*.gt.parquet)",
                       hint="run `toontalker-bench data synth` first (a few minutes)")


# ------------------------------------------------------------------------------------------------ statistics
def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half): the Mann-Whitney form of ROC AUC."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    n1, n0 = len(pos), len(neg)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Linear probe with intercept and ridge ``lam``: fitted on train, predictions on test."""
    xt = np.hstack([x_train, np.ones((len(x_train), 1))])
    reg = lam * np.eye(xt.shape[1])
    reg[-1, -1] = 0
    w = np.linalg.solve(xt.T @ xt + reg, xt.T @ y_train)
    return np.hstack([x_test, np.ones((len(x_test), 1))]) @ w


# ------------------------------------------------------------------------------------------------ measurements
def measure_motion(clips: list[Clip], analyzer: FaceAnalyzer) -> dict[str, Any]:
    bfm = default_bfm()
    rows: dict[str, dict[str, list]] = {}
    for c in progress(clips, desc="pose/expression", unit="clip"):
        track = analyzer.track(c.frames, desc=c.clip_id)
        est = bfm.estimate(track.landmarks68)
        d = rows.setdefault(c.domain, {k: [] for k in ("est", "gt", "exp", "split", "found", "fallback")})
        d["est"].append(est.angles)
        d["exp"].append(est.exp)
        d["gt"].append(c.motion)
        d["split"].append(np.full(len(c.frames), c.split))
        d["found"].append(est.ok)
        d["fallback"].append(track.fallback)
    out: dict[str, Any] = {}
    for domain, d in rows.items():
        est, gt, exp = (np.concatenate(d[k]) for k in ("est", "gt", "exp"))
        split, found = np.concatenate(d["split"]), np.concatenate(d["found"])
        ok = found & np.isfinite(gt).all(1)
        err = np.abs(est[ok] - gt[ok, 17:20])
        train, test = ok & (split == "train"), ok & (split == "test")
        res: dict[str, Any] = {
            "frames": int(len(found)), "face_found_rate": float(found.mean()),
            "box_fallback_rate": float(np.concatenate(d["fallback"]).mean()),
            "pose_mae_deg": {a: float(v) for a, v in zip(("yaw", "pitch", "roll"), err.mean(0))},
            "pose_mae_deg_mean": float(err.mean()),
            "gt_range_deg": {a: [float(gt[ok, 17 + i].min()), float(gt[ok, 17 + i].max())]
                             for i, a in enumerate(("yaw", "pitch", "roll"))},
            "pose_corr": {a: pearson(est[ok, i], gt[ok, 17 + i]) for i, a in enumerate(("yaw", "pitch", "roll"))},
        }
        if train.any() and test.any():
            cal = np.stack([ridge_probe(est[train, i:i + 1], gt[train, 17 + i], est[test, i:i + 1], lam=0.0)
                            for i in range(3)], axis=1)
            res["pose_mae_deg_calibrated"] = float(np.abs(cal - gt[test, 17:20]).mean())
            res["pose_mae_deg_test"] = float(np.abs(est[test] - gt[test, 17:20]).mean())
            pred = ridge_probe(exp[train], gt[train, :17], exp[test])
            from ..faces.pose import MORPHS

            per = {m: pearson(pred[:, i], gt[test, i]) for i, m in enumerate(MORPHS) if gt[test, i].std() > 1e-6}
            res["expression_probe_r"] = {m: float(v) for m, v in per.items()}
            res["expression_probe_r_mean"] = float(np.nanmean(list(per.values())))
            res["train_frames"], res["test_frames"] = int(train.sum()), int(test.sum())
        out[domain] = res
    return out


def measure_fid(clips: list[Clip], n: int, device: str, batch_size: int) -> dict[str, Any]:
    from scipy.ndimage import gaussian_filter

    from ..metrics.fid import InceptionExtractor, fid_from_features

    frames = np.concatenate([c.frames for c in clips if c.split == "test"] or [c.frames for c in clips])
    rng = np.random.default_rng(0)
    x = frames[rng.permutation(len(frames))[:n]]
    ext = InceptionExtractor(device, batch_size, cache=False)
    fx = ext.features(x, "inception (clean)")
    half = len(x) // 2
    out: dict[str, Any] = {"n": int(len(x)), "backend": ext.backend, "fid_x_x": fid_from_features(fx, fx),
                           "fid_half_half": fid_from_features(fx[:half], fx[half:]), "blur": {}, "noise": {}}
    for s in BLUR_SIGMAS:
        xb = np.stack([gaussian_filter(f.astype(np.float32), (s, s, 0)) for f in x]).round().clip(0, 255)
        out["blur"][str(s)] = fid_from_features(fx, ext.features(xb.astype(np.uint8), f"inception (blur {s})"))
    for s in NOISE_STDS:
        xn = (x.astype(np.float32) / 255 + rng.normal(0, s, x.shape)).clip(0, 1) * 255
        out["noise"][str(s)] = fid_from_features(fx, ext.features(xn.round().astype(np.uint8), f"inception (noise {s})"))
    out["monotone_blur"] = bool(np.all(np.diff([0.0, *out["blur"].values()]) > 0))
    out["monotone_noise"] = bool(np.all(np.diff([0.0, *out["noise"].values()]) > 0))
    return out


def measure_identity(clips: list[Clip], analyzer: FaceAnalyzer, per_clip: int = 6) -> dict[str, Any]:
    from ..metrics.identity import ID_BACKENDS
    from ..metrics.pair import Pair

    out: dict[str, Any] = {}
    for name in ID_BACKENDS.names():
        try:
            emb = ID_BACKENDS.create(name)
        except AssetError as e:
            out[name] = {"reason": str(e)}
            continue
        res: dict[str, Any] = {}
        for domain in sorted({c.domain for c in clips}):
            vecs, ids = [], []
            for c in [c for c in clips if c.domain == domain]:
                pair = Pair(c.frames[_pick(len(c.frames), per_clip)], analyzer=analyzer)
                e = emb.embed(pair, "generated")
                keep = np.isfinite(e).all(1)
                vecs.append(e[keep])
                ids += [c.identity] * int(keep.sum())
            v, ids_arr = np.concatenate(vecs), np.array(ids)
            if len(set(ids)) < 2:
                res[domain] = {"reason": f"only {len(set(ids))} identity with faces"}
                continue
            sim = v @ v.T
            iu = np.triu_indices(len(v), 1)
            same = ids_arr[iu[0]] == ids_arr[iu[1]]
            res[domain] = {"auc": roc_auc(sim[iu][same], sim[iu][~same]), "identities": int(len(set(ids))),
                           "same_mean": float(sim[iu][same].mean()), "diff_mean": float(sim[iu][~same].mean()),
                           "embeddings": int(len(v))}
        out[name] = res
    return out


# ------------------------------------------------------------------------------------------------ report
def run(params: Params, out: str = "docs/metrics-validation.md", dataset_dir: str | None = None, max_clips: int = 12,
        frames_per_clip: int = 24, device: str = "cpu", json_out: str | None = None,
        fid_images: int = 64, sensitivity_pairs: int = 3, sensitivity_frames: int = 24) -> dict[str, Any]:
    """Measure everything and write the Markdown report (and optionally the JSON figures). Returns the figures."""
    import time

    t0 = time.time()
    clips, source = validation_clips(params, dataset_dir, max_clips, frames_per_clip)
    if not clips:
        raise DatasetError(f"no clip with a face in {source}", hint="rebuild the demo corpus")
    analyzer = FaceAnalyzer()
    report: dict[str, Any] = {
        "source": source, "n_clips": len(clips), "n_frames": int(sum(len(c.frames) for c in clips)),
        "clips_per_domain": {d: sum(c.domain == d for c in clips) for d in sorted({c.domain for c in clips})},
        "face_backend": analyzer.backend,
        "motion": measure_motion(clips, analyzer),
        "identity": measure_identity(clips, analyzer),
        "fid": measure_fid(clips, fid_images, device, params.eval.batch_size),
    }
    ds = Path(dataset_dir or params.build.out_dir)
    if sensitivity_pairs and (ds / "protocol" / "renderer.json").is_file():
        from .sensitivity import measure

        report["sensitivity"] = measure(ds, per_domain=sensitivity_pairs, n_frames=sensitivity_frames,
                                        ep=params.eval)
    report.update(summary_keys(report, params.eval.id_backend))
    report["seconds"] = round(time.time() - t0, 1)
    write_text(out, render(report))
    if json_out:
        write_json(json_out, report)
    return report


def summary_keys(report: dict[str, Any], id_backend: str = "auto") -> dict[str, Any]:
    """The machine-readable headline figures per domain, and per metric its validation verdict: ``pose_mae_deg``,
    ``expression_probe_r``, ``identity_auc`` (the backend the evaluation uses), ``identities``, ``metrics``."""
    from ..metrics.identity import embedder

    motion = report.get("motion", {})
    out: dict[str, Any] = {
        "pose_mae_deg": {d: m.get("pose_mae_deg_mean") for d, m in motion.items()},
        "expression_probe_r": {d: m.get("expression_probe_r_mean") for d, m in motion.items()},
    }
    try:
        backend = embedder(id_backend).name
    except AssetError:
        backend = "dlib-resnet128"
    ident = report.get("identity", {}).get(backend, {})
    out["identity_backend"] = backend
    out["identity_auc"] = {d: x.get("auc") for d, x in ident.items() if isinstance(x, dict)}
    out["identities"] = {d: x.get("identities") for d, x in ident.items() if isinstance(x, dict)}
    for k, v in out.items():  # figures the motion measurement already set under these names win
        if isinstance(v, dict):
            out[k] = {**v, **report.get(k, {})} if isinstance(report.get(k), dict) else v
    verdicts: dict[str, Any] = {}
    sens = report.get("sensitivity", {}).get("metrics", {})
    for m, res in sens.items():
        verdicts[m] = {"monotone": res["monotone"], "flat": res["flat"],
                       "cross": {d: x.get("cross") for d, x in res["domains"].items()},
                       "domains": {d: {"monotone": x.get("monotone", False), "flat": x.get("flat", True)}
                                   for d, x in res["domains"].items()}}
    out["metrics"] = verdicts
    return out


def _f(v: Any, nd: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def render(r: dict[str, Any]) -> str:
    m, fid, ident = r["motion"], r["fid"], r["identity"]
    doms = sorted(m)
    lines = [
        "# Metric validation",
        "",
        "Generated by `toontalker-bench evaluate validate-metrics`; every figure below is measured, on "
        f"{r['source']} ({r['n_clips']} clips, {r['n_frames']} frames: "
        + ", ".join(f"{k} {v} clips" for k, v in r["clips_per_domain"].items()) + f"), in {r['seconds']} s.",
        f"Faces: `{r['face_backend']}`. Motion: 3DDFA BFM subspace fitted to dlib 68-point landmarks (`bfm3ddfa`).",
        "Train/test: identity-disjoint (the built dataset's split, or a fixed hash of the identity for the corpus).",
        "",
        "## Pose (APD's input): 3DMM Euler angles vs ground truth",
        "",
        "| domain | face found | MAE yaw | MAE pitch | MAE roll | MAE mean | MAE test | linearly calibrated MAE test | "
        "r yaw | r pitch | "
        "r roll | GT yaw range |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in doms:
        x = m[d]
        pm, pc = x["pose_mae_deg"], x["pose_corr"]
        lines.append(f"| {d} | {x['face_found_rate']:.1%} | {_f(pm['yaw'])} | {_f(pm['pitch'])} | {_f(pm['roll'])} | "
                     f"{_f(x['pose_mae_deg_mean'])} | {_f(x.get('pose_mae_deg_test'))} | {_f(x.get('pose_mae_deg_calibrated'))} | "
                     f"{_f(pc['yaw'])} | "
                     f"{_f(pc['pitch'])} | {_f(pc['roll'])} | {x['gt_range_deg']['yaw'][0]:.0f} to "
                     f"{x['gt_range_deg']['yaw'][1]:.0f} |")
    lines += ["", "MAE in degrees over frames where the face was found (all clips, then test clips only); r: Pearson "
              "correlation with the ground truth. Linearly calibrated: a per-angle gain and offset fitted on train "
              "clips, applied to test clips; it separates a scale/offset mismatch between the corpus's head geometry "
              "and the BFM's from noise. Goal: MAE <= 3 degrees in each domain.", "",
              "On the demo corpus the real heads are textured BFM meshes turned in 3-D, so their ground truth is an "
              "exact rotation in the estimator's conventions; the cartoon heads are ray-cast ellipsoids with painted "
              "features, a geometry that is not the BFM's, so part of the cartoon error is a gain/offset mismatch "
              "(the calibrated column shows how much). The unmodified carphone video has no ground truth and is not counted.", "",
              "## Expression (AED's input): linear probe from the 10-D code to the 17 ground-truth morphs", "",
              "| domain | train frames | test frames | mean Pearson r (test) | per morph |", "|---|---|---|---|---|"]
    for d in doms:
        x = m[d]
        if "expression_probe_r" not in x:
            lines.append(f"| {d} | n/a | n/a | n/a | no train/test split in this domain |")
            continue
        per = ", ".join(f"{k} {v:.2f}" for k, v in x["expression_probe_r"].items())
        lines.append(f"| {d} | {x['train_frames']} | {x['test_frames']} | {_f(x['expression_probe_r_mean'])} | {per} |")
    lines += ["", "nan: the morph or its prediction is constant on the test frames, so no correlation is defined.", "",
              "## FID", "", f"{fid['n']} held-out frames, weights `{fid['backend']}`.", "",
              f"- FID(X, X) = {fid['fid_x_x']:.2e}; FID between two disjoint halves of X = {_f(fid['fid_half_half'])}",
              "- Gaussian blur, sigma in pixels: " + ", ".join(f"{k}: {_f(v)}" for k, v in fid["blur"].items())
              + f" (monotone: {'yes' if fid['monotone_blur'] else 'NO'})",
              "- Additive Gaussian noise, std on [0, 1]: " + ", ".join(f"{k}: {_f(v)}" for k, v in fid["noise"].items())
              + f" (monotone: {'yes' if fid['monotone_noise'] else 'NO'})", "",
              "## Identity: ROC AUC of same- vs different-identity cosine similarity", "",
              "| backend | domain | AUC | identities | embeddings | mean sim same | mean sim different |",
              "|---|---|---|---|---|---|---|"]
    for b, res in ident.items():
        if "reason" in res:
            lines.append(f"| {b} | all | n/a | | | | {res['reason']} |")
            continue
        for d, x in res.items():
            if "reason" in x:
                lines.append(f"| {b} | {d} | n/a | | | | {x['reason']} |")
            else:
                lines.append(f"| {b} | {d} | {_f(x['auc'], 3)} | {x['identities']} | {x['embeddings']} | "
                             f"{_f(x['same_mean'], 3)} | {_f(x['diff_mean'], 3)} |")
    lines += render_sensitivity(r.get("sensitivity"))
    lines += render_verdicts(r)
    return "\n".join(lines) + "\n"


def render_sensitivity(sens: dict[str, Any] | None) -> list[str]:
    """The sensitivity suite's tables: each metric's value at each strength of each injected error, per domain."""
    if not sens:
        return ["", "## Sensitivity to injected errors", "", "Not measured (no built demo dataset to re-render).", ""]
    from .sensitivity import MUST_IGNORE, OWN_ERROR, TOLERANCE

    lv = sens["levels"]
    lines = ["", "## Sensitivity to injected errors", "",
             f"The exact answer (oracle-render) to {sum(sens['cases'].values())} self-reenactment pairs "
             f"({', '.join(f'{d} {n}' for d, n in sens['cases'].items())}; {sens['frames_per_case']} frames each), "
             "perturbed by one kind of error at a time: pose offset (degrees, every frame after the first) "
             f"{lv['pose']}, expression offset (morph units) {lv['expression']}, identity swap, Gaussian blur "
             f"(pixels at 256) {lv['blur']}. A metric should grow with its own error (monotone) and change by at most "
             f"{TOLERANCE:g} of that growth under the errors it should ignore (cross figures below: that ratio).", ""]
    for domain, kinds in sens["values"].items():
        lines += [f"### {domain}", "", "| metric | own error | " + " | ".join(
            f"{k} {', '.join(f'{x:g}' for x in lv[k])}" for k in kinds) + " |",
                  "|---|---|" + "---|" * len(kinds)]
        for m, res in sens["metrics"].items():
            if domain not in res["domains"]:
                continue
            cells = []
            for k in kinds:
                vals = kinds[k].get(m)
                cells.append(" → ".join(_f(x, 3) for x in vals) if vals else "")
            lines.append(f"| `{m}` | {OWN_ERROR[m]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["| metric | own error | monotone | must ignore | cross-sensitivity (cartoon; real) | flat |",
              "|---|---|---|---|---|---|"]
    for m, res in sens["metrics"].items():
        cross = "; ".join(", ".join(f"{k} {_f(v, 2)}" for k, v in (d.get("cross") or {}).items()) or "–"
                          for d in res["domains"].values())
        lines.append(f"| `{m}` | {res['own_error']} | {'yes' if res['monotone'] else 'NO'} | "
                     f"{', '.join(MUST_IGNORE.get(m, ())) or '–'} | {cross} | {'yes' if res['flat'] else 'NO'} |")
    return lines + [""]


def render_verdicts(r: dict[str, Any]) -> list[str]:
    """What the leaderboard marks: per metric and task, why it is not validated on this data (if it is not)."""
    from ..domains import TASKS

    lines = ["## What the leaderboard marks as not validated", "",
             f"Targets: pose MAE <= {POSE_MAE_TARGET_DEG:g} degrees (APD), expression probe r >= "
             f"{EXPRESSION_R_TARGET:g} (AED), identity AUC >= {IDENTITY_AUC_TARGET:g} ({r.get('identity_backend')}, "
             "CSIM / aed_id), in every domain a task reads, and the sensitivity suite's verdicts. Pixel metrics need "
             "none.", "", "| metric | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for m in ("apd_rel_deg", "aed_exp_rel", "apd_deg", "aed_exp", "csim", "akd"):
        cells = []
        for t in TASKS:
            problems = validation_problems(r, m, t)
            cells.append("validated" if not problems else "; ".join(problems))
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    return lines + [""]
