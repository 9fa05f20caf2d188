"""Validate the metrics against the demo corpus, whose motion and identities are known; write the report.

Figures (per domain): pose MAE in degrees of each motion backend (3DMM fits, MediaPipe, the corpus map) vs
ground-truth yaw/pitch/roll; expression: a ridge probe from the backend's expression code (the 10-D BFM code, the 52
blendshapes) to the 17 ground-truth morphs, fitted on train clips, Pearson r on test clips; FID(X, X),
FID between two disjoint halves, and FID against blurred / noisy copies at growing strength; identity ROC AUC of
same- vs different-identity embedding similarity per backend. Frames come from the built dataset (aligned clips +
``.npz`` motion) when it exists, else from the demo corpus videos (``<video>.mp4`` + ``<video>.gt.parquet``),
cropped around the ground-truth box the way the align stage does. The Markdown is ``validation_report``'s.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import Params
from ..core.errors import AssetError, ConfigError, DatasetError, MediaError
from ..core.io import write_json, write_text
from ..core.progress import progress
from ..data.dataset import Clip, load_clips
from ..faces.analyzer import FaceAnalyzer
from ..faces.bfm import MotionEstimate
from ..faces.pose import POSE_DIM
from ..metrics.pair import as_method_output
from .validation_report import render
from .verdicts import CORPUS, GENERIC, MEDIAPIPE

log = logging.getLogger(__name__)

SIZE = 256
BLUR_SIGMAS = (1.0, 2.0, 4.0)
NOISE_STDS = (0.04, 0.08, 0.16)

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
    """One clip per (video, shot) with a face (at most ``max_clips`` per domain, 0 = all); frames sampled evenly and
    cropped around the ground-truth box."""
    import pandas as pd

    from ..core.video import read_frames

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
            if max_clips and len(per_domain.get(domain, [])) + len([w for w in wanted if w[2] == domain]) >= max_clips:
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


def _as_output(clip: Clip, output_size: int, analysis_size: int) -> Clip:
    return replace(clip, frames=as_method_output(clip.frames, output_size, analysis_size))


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


# ------------------------------------------------------------------------------------------------ motion
#: Generic fits measured side by side (jaw contour mode, one shape code per clip).
GENERIC_VARIANTS: tuple[tuple[str, bool], ...] = (("full", False), ("full", True), ("vertical", False),
                                                  ("vertical", True), ("inner", False), ("inner", True))


def motion_clips(params: Params, dataset_dir: str | None, frames_per_clip: int
                 ) -> tuple[Iterator[Clip], int, str, str | None]:
    """Every clip of the built dataset (decoded one at a time, ``frames_per_clip`` evenly spaced frames, 0 = all), or
    of the demo corpus videos; the number of clips, the source and the built dataset's folder (None for the videos)."""
    from ..core.video import read_frames
    from ..data.dataset import clip_table

    ds = Path(dataset_dir or params.build.out_dir)
    if (ds / "clips.parquet").is_file():
        table = clip_table(ds).sort_values(["domain", "clip_id"])

        def gen() -> Iterator[Clip]:
            for row in table.itertuples():
                frames = read_frames(ds / row.path, size=(SIZE, SIZE))
                motion = np.full((len(frames), POSE_DIM), np.nan)
                npz = (ds / row.path).with_suffix(".npz")
                if npz.is_file():
                    with np.load(npz) as z:
                        if "motion" in z:
                            m = np.asarray(z["motion"], np.float64)[: len(frames)]
                            motion[: len(m)] = m
                idx = _pick(len(frames), frames_per_clip) if frames_per_clip else np.arange(len(frames))
                yield Clip(str(row.clip_id), str(row.domain), str(row.identity), str(row.split), frames[idx],
                           motion[idx])

        return gen(), len(table), f"built dataset {ds}", str(ds)
    clips, source = validation_clips(params, dataset_dir, 0, frames_per_clip or 48)
    return iter(clips), len(clips), source, None


#: The ``mediapipe`` backend and, measured beside it, the same readings with the head matrix's angles.
MEDIAPIPE_VARIANTS: tuple[str, ...] = (MEDIAPIPE, MEDIAPIPE + "-matrix")


def _mediapipe(frames: np.ndarray) -> tuple[MotionEstimate, MotionEstimate]:
    """The ``mediapipe`` backend's estimate of ``frames``, and the same with the facial transformation matrix's
    angles in place of the landmark pose."""
    from ..faces.mediapipe import matrix_pose, read_video
    from ..metrics.motion import MediaPipeBackend

    readings = read_video(frames)
    est = MediaPipeBackend().from_readings(readings, frames.shape[1:3])
    angles = np.where(est.ok[:, None], matrix_pose(readings["matrix"]), np.nan)
    return est, MotionEstimate(angles, est.exp, est.ok & np.isfinite(angles).all(1), MEDIAPIPE_VARIANTS[1])


def _finite_mean(values: Iterable[float]) -> float | None:
    """Mean of the finite values (a constant prediction has no correlation), None when there are none."""
    v = np.array(list(values), np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else None


def _stats(est: np.ndarray, gt: np.ndarray, code: np.ndarray, split: np.ndarray, found: np.ndarray,
           test_only: bool = False, direct: bool = False) -> dict[str, Any]:
    """Pose errors and expression probe of one backend in one domain (frames with a face and ground truth)."""
    from ..faces.pose import ANGLES, MORPHS

    ok = found & np.isfinite(gt).all(1)
    train, test = ok & (split == "train"), ok & (split == "test")
    res: dict[str, Any] = {"frames": int(len(found)), "face_found_rate": float(found.mean()),
                           "train_frames": int(train.sum()), "test_frames": int(test.sum())}

    def mae(rows: np.ndarray) -> dict[str, float] | None:
        if not rows.any():
            return None
        return {a: float(v) for a, v in zip(ANGLES, np.abs(est[rows] - gt[rows, 17:20]).mean(0))}

    res["pose_mae_deg"] = None if test_only else mae(ok)
    res["pose_mae_deg_test"] = mae(test)
    for key in ("pose_mae_deg", "pose_mae_deg_test"):
        res[key + "_mean"] = None if res[key] is None else float(np.mean(list(res[key].values())))
    eval_rows = test if test_only else ok
    res["pose_corr"] = {a: pearson(est[eval_rows, i], gt[eval_rows, 17 + i]) for i, a in enumerate(ANGLES)} \
        if eval_rows.any() else None
    res["gt_range_deg"] = {a: [float(gt[ok, 17 + i].min()), float(gt[ok, 17 + i].max())]
                           for i, a in enumerate(ANGLES)} if ok.any() else None
    if train.any() and test.any():
        if not test_only:
            cal = np.stack([ridge_probe(est[train, i:i + 1], gt[train, 17 + i], est[test, i:i + 1], lam=0.0)
                            for i in range(3)], axis=1)
            res["pose_mae_deg_calibrated"] = float(np.abs(cal - gt[test, 17:20]).mean())
        vary = [i for i in range(len(MORPHS)) if gt[test, i].std() > 1e-6]
        pred = ridge_probe(code[train], gt[train, :17], code[test])
        res["expression_probe_r"] = {MORPHS[i]: pearson(pred[:, i], gt[test, i]) for i in vary}
        res["expression_probe_r_mean"] = _finite_mean(res["expression_probe_r"].values())
        if direct:
            res["expression_direct_r"] = {MORPHS[i]: pearson(code[test, i], gt[test, i]) for i in vary}
            res["expression_direct_r_mean"] = _finite_mean(res["expression_direct_r"].values())
    return res


def _predict(corpus: Any, feats: dict[str, np.ndarray], seconds: dict[str, float]) -> tuple | None:
    import time

    if corpus.model is None:
        return None
    t0 = time.perf_counter()
    out = corpus.model.predict(feats)
    seconds["corpus_predict"] += time.perf_counter() - t0
    return out


def measure_motion(clips: Iterable[Clip], analyzer: FaceAnalyzer, dataset_dir: str | None = None,
                   corpus: Any = None, n_clips: int | None = None) -> dict[str, Any]:
    """Every generic fit variant, the ``mediapipe`` backend (and its matrix reading) and the corpus-specific backend
    against ground truth, per domain. MediaPipe reads the frames itself; without its package or model the report
    says why (``mediapipe_unavailable``).

    ``corpus``: a fitted ``CorpusRidgeBackend``; by default one is fitted on ``dataset_dir``'s train split (exactly as
    the evaluation does), or, without a built dataset, on the train clips given here.
    """
    import time

    from ..faces.bfm import backend_name, get_bfm
    from ..faces.motion_map import BLOCKS, PoseVectorRidge, motion_features
    from ..metrics.motion import CorpusRidgeBackend

    t_corpus = time.perf_counter()
    if corpus is None and dataset_dir is not None:
        corpus = CorpusRidgeBackend(dataset_dir=dataset_dir)
    corpus_fit_s = time.perf_counter() - t_corpus
    names = [backend_name(c, s) for c, s in GENERIC_VARIANTS]
    seconds = {"face_analysis": 0.0, **{n: 0.0 for n in names}, MEDIAPIPE: 0.0, "corpus_features": 0.0,
               "corpus_predict": 0.0}
    mp_missing: str | None = None
    per: dict[str, dict[str, list]] = {}
    kept: list[tuple[Clip, dict[str, np.ndarray], int]] = []
    n_frames = 0
    for c in progress(clips, desc="pose/expression", unit="clip", total=n_clips):
        t0 = time.perf_counter()
        track = analyzer.track(c.frames, desc=c.clip_id)
        seconds["face_analysis"] += time.perf_counter() - t0
        n_frames += len(c.frames)
        d = per.setdefault(c.domain, {"gt": [], "split": [], "identity": [], "fallback": [], "clip": [],
                                      "corpus": [], **{n: [] for n in (*names, *MEDIAPIPE_VARIANTS)}})
        d["gt"].append(c.motion.astype(np.float64))
        d["split"].append(np.full(len(c.frames), c.split))
        d["identity"].append(np.full(len(c.frames), c.identity))
        d["fallback"].append(track.fallback)
        d["clip"].append(c.clip_id)
        for (contour, shared), name in zip(GENERIC_VARIANTS, names):
            t0 = time.perf_counter()
            d[name].append(get_bfm(contour).estimate(track.landmarks68, shared_shape=shared))
            seconds[name] += time.perf_counter() - t0
        if mp_missing is None:
            t0 = time.perf_counter()
            try:
                for name, est in zip(MEDIAPIPE_VARIANTS, _mediapipe(c.frames)):
                    d[name].append(est)
            except (AssetError, MediaError) as e:
                mp_missing = str(e)
                log.warning("validation: motion backend %s not measured: %s", MEDIAPIPE, e)
            seconds[MEDIAPIPE] += time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = motion_features(c.frames, track.landmarks68)
        seconds["corpus_features"] += time.perf_counter() - t0
        d["corpus"].append(None)
        if corpus is not None:
            d["corpus"][-1] = _predict(corpus, feats, seconds)
        else:  # kept (as float32) until the map is fitted on the train clips below
            kept.append((c, {k: v.astype(np.float32) for k, v in feats.items()}, len(d["corpus"]) - 1))
    if corpus is None:  # no built dataset: fit on the train clips given here
        train = [(c, f) for c, f, _ in kept if c.split == "train" and np.isfinite(c.motion).all(1).any()]
        if train:
            feats = {k: np.concatenate([f[k] for _, f in train]).astype(np.float64) for k in BLOCKS}
            model = PoseVectorRidge.fit(feats, np.concatenate([c.motion for c, _ in train]).astype(np.float64),
                                        np.concatenate([np.full(len(c.frames), c.domain) for c, _ in train]),
                                        np.concatenate([np.full(len(c.frames), c.identity) for c, _ in train]))
            corpus = CorpusRidgeBackend(model=model, label="validation-train-clips")
        else:
            corpus = CorpusRidgeBackend(dataset_dir=None)
        for c, f, i in kept:
            per[c.domain]["corpus"][i] = _predict(corpus, {k: v.astype(np.float64) for k, v in f.items()}, seconds)
    corpus_name = corpus.name
    out: dict[str, Any] = {"frames": n_frames, "backends": {}, "corpus": {
        "backend": corpus_name, "fallback_reason": corpus.fallback_reason or None,
        "fit_seconds": round(corpus_fit_s, 1),
        "maps": getattr(corpus.model, "info", None) and {
            d: {k: (v["chosen"] if isinstance(v, dict) else v) for k, v in i.items()}
            for d, i in corpus.model.info.items()}}}
    out["mediapipe_unavailable"] = mp_missing
    s_frame = {k: v / max(n_frames, 1) for k, v in seconds.items()}
    out["s_per_frame"] = {"face_analysis": s_frame["face_analysis"], **{n: s_frame[n] for n in names},
                          **({} if mp_missing else {MEDIAPIPE: s_frame[MEDIAPIPE]}),  # its own face detection
                          # the corpus features include a jaw-y fit
                          CORPUS: s_frame["corpus_features"] + s_frame["corpus_predict"]}
    identities: dict[str, dict[str, int]] = {}
    for domain, d in per.items():
        gt = np.concatenate(d["gt"])
        split = np.concatenate(d["split"])
        ident = np.concatenate(d["identity"])
        has_gt = np.isfinite(gt).all(1)
        identities[domain] = {k: len(set(ident[has_gt & sel].tolist())) for k, sel in
                              (("all", np.ones(len(gt), bool)), ("train", split == "train"), ("test", split == "test"))}
        for name in names + ([] if mp_missing else list(MEDIAPIPE_VARIANTS)):
            est = d[name]
            found = np.concatenate([e.ok for e in est])
            res = _stats(np.concatenate([e.angles for e in est]), gt, np.concatenate([e.exp for e in est]), split,
                         found)
            if name in names:  # RetinaFace's weak-evidence boxes: what the 3DMM fits were given
                res["box_fallback_rate"] = float(np.concatenate(d["fallback"]).mean())
            out["backends"].setdefault(name, {})[domain] = res
        if corpus.model is not None:
            preds = d["corpus"]
            pred = np.concatenate([p[0] for p in preds])
            found = np.concatenate([p[1] for p in preds])
            res = _stats(pred[:, 17:20], gt, pred[:, :17], split, found, test_only=True, direct=True)
            test_clips = [p for p, sp in zip(preds, d["split"]) if sp[0] == "test"]
            right = [p[2] == domain for p in test_clips]
            res["domain_correct_test_clips"] = f"{sum(right)}/{len(right)}"
            out["backends"].setdefault(CORPUS, {})[domain] = res
    out["identities"] = identities
    out["headline_backend"] = CORPUS if corpus.model is not None else GENERIC
    out["headline_backend_name"] = corpus_name if corpus.model is not None else GENERIC
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


def identity_embeddings(clips: list[Clip], analyzer: FaceAnalyzer, embedder: Any, domain: str, per_clip: int = 6
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings ``(N, D)`` of ``per_clip`` evenly spaced frames of each ``domain`` clip (NaN rows where a frame
    has no usable face) and each row's identity."""
    from ..metrics.pair import Pair

    vecs, ids = [], []
    for c in [c for c in clips if c.domain == domain]:
        vecs.append(embedder.embed(Pair(c.frames[_pick(len(c.frames), per_clip)], analyzer=analyzer), "generated"))
        ids += [c.identity] * len(vecs[-1])
    return np.concatenate(vecs), np.array(ids)


def identity_separation(sim: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    """Same- against different-identity ROC AUC of a similarity matrix between faces of identities ``ids``."""
    if len(set(ids.tolist())) < 2:
        return {"reason": f"only {len(set(ids.tolist()))} identity with faces"}
    iu = np.triu_indices(len(ids), 1)
    same = ids[iu[0]] == ids[iu[1]]
    return {"auc": roc_auc(sim[iu][same], sim[iu][~same]), "identities": len(set(ids.tolist())),
            "same_mean": float(sim[iu][same].mean()), "diff_mean": float(sim[iu][~same].mean()),
            "embeddings": len(ids)}


def measure_identity(clips: list[Clip], analyzer: FaceAnalyzer, per_clip: int = 6) -> dict[str, Any]:
    from ..metrics.identity import ID_BACKENDS

    out: dict[str, Any] = {}
    for name in ID_BACKENDS.names():
        try:
            emb = ID_BACKENDS.create(name)
        except AssetError as e:
            out[name] = {"reason": str(e)}
            continue
        res: dict[str, Any] = {}
        for domain in sorted({c.domain for c in clips}):
            v, ids = identity_embeddings(clips, analyzer, emb, domain, per_clip)
            keep = np.isfinite(v).all(1)
            res[domain] = identity_separation(v[keep] @ v[keep].T, ids[keep])
        out[name] = res
    return out


# ------------------------------------------------------------------------------------------------ report
def run(params: Params, out: str = "docs/metrics-validation.md", dataset_dir: str | None = None, max_clips: int = 12,
        frames_per_clip: int = 24, device: str = "cpu", json_out: str | None = None,
        fid_images: int = 64, motion_frames_per_clip: int = 48, sensitivity_pairs: int = 3,
        sensitivity_frames: int = 24, output_size: int = 0) -> dict[str, Any]:
    """Measure everything and write the Markdown report (and optionally the JSON figures). Returns the figures.

    ``output_size``: read every frame the instruments see (the sensitivity suite's perturbed answers included) as a
    method of that size returns it and the evaluation enlarges it (:func:`as_method_output`), so the figures hold for
    the board's outputs; 0 = the dataset's frames as they are.

    The motion part reads every clip (``motion_frames_per_clip`` evenly spaced frames each, 0 = all, one clip in
    memory at a time); identity and FID use the first ``max_clips`` clips per domain, ``frames_per_clip`` frames each; the sensitivity
    suite perturbs ``sensitivity_pairs`` exact answers per domain (0 skips it).
    """
    import time

    t0 = time.time()
    seconds: dict[str, float] = {}
    clips, source = validation_clips(params, dataset_dir, max_clips, frames_per_clip)
    clips = [_as_output(c, output_size, params.eval.analysis_size) for c in clips]
    if not clips:
        raise DatasetError(f"no clip with a face in {source}", hint="rebuild the demo corpus")
    analyzer = FaceAnalyzer()
    report: dict[str, Any] = {
        "source": source, "n_clips": len(clips), "n_frames": int(sum(len(c.frames) for c in clips)),
        "clips_per_domain": {d: sum(c.domain == d for c in clips) for d in sorted({c.domain for c in clips})},
        "face_backend": analyzer.backend,
    }
    seconds["load"] = time.time() - t0
    t = time.time()
    mclips, n_mclips, msource, ds = motion_clips(params, dataset_dir, motion_frames_per_clip)
    mclips = (_as_output(c, output_size, params.eval.analysis_size) for c in mclips)
    report["motion"] = measure_motion(mclips, analyzer, dataset_dir=ds, n_clips=n_mclips)
    report["motion"].update(source=msource, clips=n_mclips, frames_per_clip=motion_frames_per_clip or "all")
    seconds["motion"] = time.time() - t
    t = time.time()
    report["identity"] = measure_identity(clips, analyzer)
    seconds["identity"] = time.time() - t
    t = time.time()
    report["fid"] = measure_fid(clips, fid_images, device, params.eval.batch_size)
    seconds["fid"] = time.time() - t
    report.update(motion_summary(report["motion"]))
    built = Path(dataset_dir or params.build.out_dir)
    if sensitivity_pairs and (built / "protocol" / "renderer.json").is_file():
        from .sensitivity import measure

        t = time.time()
        report["sensitivity"] = measure(built, per_domain=sensitivity_pairs, n_frames=sensitivity_frames,
                                        ep=params.eval, output_size=output_size)
        seconds["sensitivity"] = time.time() - t
    report.update(summary_keys(report, params.eval.id_backend))
    report.update(provenance(params, built), output_size=output_size or SIZE)
    report["seconds"] = round(time.time() - t0, 1)
    report["seconds_per_part"] = {k: round(v, 1) for k, v in seconds.items()}
    write_text(out, render(report, figures=json_out))
    if json_out:
        write_json(json_out, report)
    return report


def board_output_size(profile: str) -> int:
    """The output size every registered method has in ``profile`` (the board's, e.g. 64 px for ``tiny``), which the
    validation reads frames at by default."""
    from ..models.base import METHODS
    from ..models.registry import load_profile, profile_names

    sizes = {int(load_profile(e.name, profile)["size"]) for e in METHODS if profile in profile_names(e.name)}
    if len(sizes) != 1:
        raise ConfigError(f"the methods' {profile!r} profiles have output sizes {sorted(sizes) or 'none'}",
                          hint="pass --output-size N for the size whose values the report should validate")
    return sizes.pop()


def provenance(params: Params, dataset_dir: Path) -> dict[str, Any]:
    """What the figures are of: the dataset version, the face analysis size and the code commit (the backends' exact
    ids, the corpus map's hash included, are ``motion_backend`` / ``identity_backend``)."""
    from ..core.provenance import code_commit
    from ..data.version import dataset_version

    built = (dataset_dir / "clips.parquet").is_file()
    return {"dataset_version": dataset_version(dataset_dir) if built else None,
            "analysis_size": params.eval.analysis_size, "code_commit": code_commit()}


def motion_summary(m: dict[str, Any]) -> dict[str, Any]:
    """Top-level figures of the headline motion backend: test-clip pose MAE (mean and per angle), the expression
    probe's mean r on test clips, and the identities per domain."""
    b = m["backends"][m["headline_backend"]]
    return {
        "motion_backend": m["headline_backend_name"],
        "pose_mae_deg": {d: x["pose_mae_deg_test_mean"] for d, x in sorted(b.items())},
        "pose_mae_deg_per_angle": {d: x["pose_mae_deg_test"] for d, x in sorted(b.items())},
        "expression_probe_r": {d: x.get("expression_probe_r_mean") for d, x in sorted(b.items())},
        "identities": {d: v["all"] for d, v in sorted(m["identities"].items())},
        "s_per_frame": m["s_per_frame"]["face_analysis"] + m["s_per_frame"][m["headline_backend"]],
    }


def summary_keys(report: dict[str, Any], id_backend: str = "auto") -> dict[str, Any]:
    """The identity figures of the backend the evaluation uses (``identity_backend``, ``identity_auc``) and per
    metric its sensitivity verdicts (``metrics``); the motion figures are :func:`motion_summary`'s."""
    from ..metrics.identity import embedder

    try:
        backend = embedder(id_backend).name
    except AssetError:
        backend = "dlib-resnet128"
    ident = report.get("identity", {}).get(backend, {})
    out: dict[str, Any] = {"identity_backend": backend,
                           "identity_auc": {d: x.get("auc") for d, x in ident.items() if isinstance(x, dict)}}
    verdicts: dict[str, Any] = {}
    sens = report.get("sensitivity", {}).get("metrics", {})
    for m, res in sens.items():
        verdicts[m] = {"monotone": res["monotone"], "flat": res["flat"],
                       "cross": {d: x.get("cross") for d, x in res["domains"].items()},
                       "domains": {d: {"monotone": x.get("monotone", False), "flat": x.get("flat", True)}
                                   for d, x in res["domains"].items()}}
    out["metrics"] = verdicts
    return out
