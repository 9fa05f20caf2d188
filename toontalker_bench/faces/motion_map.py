"""Per-frame motion features (landmark geometry + appearance) and a ridge map from them to the 20-D pose vector.

The map is fitted on frames whose pose vectors are known, so it is specific to the corpus it was fitted on (the
demo corpus's renderers, identities and expression vocabulary): :mod:`toontalker_bench.metrics.motion` registers it as
the ``corpus-ridge`` motion backend, never as a general estimator.

Feature blocks (:func:`motion_features`; a frame without 68 landmarks gets NaN everywhere):

- ``angles`` (3) and ``exp`` (10): the BFM fit with the jaw contour constraining only the vertical (``bfm3ddfa-jaw-y``);
- ``region`` (15): eye openings, mouth opening and width, lip height, brow heights and gap, mouth-corner lift, lid
  positions, measured on the frontalised landmarks in inter-ocular distances;
- ``frontal`` (136): the 68 landmarks rotated back to frontal with the fitted rotation and scale (each point keeps the
  fitted model's depth), minus the BFM mean shape, in inter-ocular distances;
- ``hog``: HOG of the grey face aligned to the ArcFace 112-px template by the five points of the 68 landmarks: the
  whole face in 8-px cells, the eye/brow band and the mouth band in 4-px cells.

:class:`PoseVectorRidge` holds, per domain, two ridge regressions (features standardised, each block weighted by
1/sqrt(its size)): one to the 17 morphs (not clipped) and one per angle to the correction of the BFM fit's yaw,
pitch or roll (so a rejected correction falls back to the generic fit, not to the mean pose). For each, the feature
blocks (geometry only, or geometry + HOG) and the ridge strength are chosen by leave-identity-out cross-validation on
the training frames. The morph estimates are then put on the ground truth's scale, per domain and morph
(:func:`morph_calibration`), so that the two domains' estimates of the same motion can be compared. A ridge classifier on the
same features picks a sequence's domain (majority over its frames).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bfm import BFM, get_bfm
from .landmarks import five_from_68
from .pose import ANGLES, N_MORPHS, POSE_DIM

log = logging.getLogger(__name__)

GEOMETRY = ("angles", "exp", "region", "frontal")
BLOCKS = GEOMETRY + ("hog",)
FEATURE_SETS: tuple[tuple[str, ...], ...] = (GEOMETRY, BLOCKS)
LAMBDAS = (0.1, 1.0, 10.0, 100.0)
PARTS = ("morphs",) + ANGLES
FEATURE_VERSION = 3  # bump when a feature's or the map's definition changes (cached maps are keyed by it)
MIN_GAIN = 0.25  # morph gains below this are raised to it (see morph_calibration)

ALIGN_SIZE = 112
# ArcFace/insightface 112x112 five-point template: eye centres, nose tip, mouth corners
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]])
_EYE_BAND = (slice(28, 72), slice(16, 96))
_MOUTH_BAND = (slice(72, 108), slice(24, 88))


# ------------------------------------------------------------------------------------------------ features
def frontal_landmarks(bfm: BFM, fit: Any, landmarks: np.ndarray) -> np.ndarray:
    """``(B, 68, 2)`` landmarks (image pixels) rotated back to frontal with the fit's camera, in BFM units (y up).

    Each point is lifted to 3-D with the fitted model's depth for that point, then rotated by the inverse rotation.
    """
    x = bfm.points(np.concatenate([fit.shape, fit.exp], axis=1))
    cam = np.einsum("bij,bpj->bpi", fit.rotation, x)
    y = np.asarray(landmarks, np.float64).copy()
    y[..., 1] *= -1
    xy = (y - fit.translation[:, None]) / fit.scale[:, None, None]
    lifted = np.concatenate([xy, cam[..., 2:3]], axis=2)
    return np.einsum("bji,bpj->bpi", fit.rotation, lifted)[..., :2]


def region_terms(fr: np.ndarray, iod: float) -> np.ndarray:
    """``(B, 68, 2)`` frontal landmarks (y up) -> ``(B, 15)`` per-region measures (see the module docstring)."""
    def d(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(fr[:, a] - fr[:, b], axis=-1)

    eye_l, eye_r = fr[:, 36:42].mean(1), fr[:, 42:48].mean(1)
    return np.stack([
        (d(37, 41) + d(38, 40)) / 2 / d(36, 39), (d(43, 47) + d(44, 46)) / 2 / d(42, 45),  # eye openings
        (d(61, 67) + d(62, 66) + d(63, 65)) / 3 / iod,  # inner-lip opening
        d(48, 54) / iod, d(60, 64) / iod, d(51, 57) / iod,  # mouth width (outer, inner), outer-lip height
        (fr[:, 17:22, 1].mean(1) - eye_l[:, 1]) / iod, (fr[:, 22:27, 1].mean(1) - eye_r[:, 1]) / iod,  # brow heights
        ((fr[:, 21, 1] + fr[:, 22, 1]) / 2 - (eye_l[:, 1] + eye_r[:, 1]) / 2) / iod, d(21, 22) / iod,  # inner brows
        ((fr[:, 48, 1] + fr[:, 54, 1]) / 2 - (fr[:, 51, 1] + fr[:, 57, 1]) / 2) / iod,  # mouth-corner lift
        ((fr[:, 37, 1] + fr[:, 38, 1]) / 2 - eye_l[:, 1]) / iod,  # upper lids
        ((fr[:, 43, 1] + fr[:, 44, 1]) / 2 - eye_r[:, 1]) / iod,
        ((fr[:, 40, 1] + fr[:, 41, 1]) / 2 - eye_l[:, 1]) / iod,  # lower lids
        ((fr[:, 46, 1] + fr[:, 47, 1]) / 2 - eye_r[:, 1]) / iod,
    ], axis=1)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping ``src`` (N, 2) onto ``dst``: a 2x3 matrix."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    s = (sv * np.diag(d)).sum() / (a**2).sum()
    return np.hstack([s * r, (md - s * r @ ms)[:, None]])


def aligned_faces(frames: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames -> ``(T, 112, 112)`` uint8 grey faces aligned to the ArcFace template (zeros where
    a frame has no landmarks)."""
    import cv2

    out = np.zeros((len(frames), ALIGN_SIZE, ALIGN_SIZE), np.uint8)
    five = five_from_68(np.nan_to_num(np.asarray(landmarks68, np.float32))).astype(np.float64)
    for i, frame in enumerate(frames):
        if not np.isfinite(landmarks68[i]).all():
            continue
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.warpAffine(grey, similarity(five[i], ARCFACE_112), (ALIGN_SIZE, ALIGN_SIZE),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def hog_features(faces: np.ndarray) -> np.ndarray:
    """``(T, 112, 112)`` aligned grey faces -> ``(T, D)``: whole face (8-px cells), eye and mouth bands (4-px cells)."""
    from skimage.feature import hog

    def one(im: np.ndarray) -> np.ndarray:
        return np.concatenate([hog(im, 9, (8, 8), (2, 2)), hog(im[_EYE_BAND], 9, (4, 4), (2, 2)),
                               hog(im[_MOUTH_BAND], 9, (4, 4), (2, 2))])

    return np.stack([one(f) for f in faces]) if len(faces) else np.zeros((0, 0))


def motion_features(frames: np.ndarray, landmarks68: np.ndarray, bfm: BFM | None = None) -> dict[str, np.ndarray]:
    """Every feature block of every frame (``(T, d)`` per block; NaN rows where the 68 landmarks are incomplete)."""
    bfm = bfm or get_bfm("vertical")
    lm = np.asarray(landmarks68, np.float64)
    t = len(lm)
    has = np.isfinite(lm).all(axis=(1, 2))
    iod = float(np.linalg.norm(bfm.mean[45] - bfm.mean[36]))
    out: dict[str, np.ndarray] = {}
    if has.any():
        fit = bfm.fit(lm[has])
        fr = frontal_landmarks(bfm, fit, lm[has])
        hog = hog_features(aligned_faces(frames[has], lm[has]))
        parts = {"angles": fit.angles, "exp": fit.exp, "region": region_terms(fr, iod),
                 "frontal": ((fr - bfm.mean[None, :, :2]) / iod).reshape(len(fr), -1), "hog": hog}
    else:
        dims = {"angles": 3, "exp": 10, "region": 15, "frontal": 136,
                "hog": hog_features(np.zeros((1, ALIGN_SIZE, ALIGN_SIZE), np.uint8)).shape[1]}
        parts = {k: np.zeros((0, n)) for k, n in dims.items()}
    for k, v in parts.items():
        full = np.full((t, v.shape[1]), np.nan)
        full[has] = v
        out[k] = full
    return out


# ------------------------------------------------------------------------------------------------ ridge map
@dataclass
class RidgeMap:
    """``y = ((x - mu) / sd * scale) @ w + b`` on the concatenated ``blocks``; no blocks: the constant ``b``."""

    blocks: tuple[str, ...]
    lam: float
    mu: np.ndarray
    sd: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: np.ndarray

    def predict(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        if not self.blocks:
            return np.tile(self.b, (len(next(iter(feats.values()))), 1))
        x = np.concatenate([feats[k] for k in self.blocks], axis=1)
        return ((x - self.mu) / self.sd * self.scale) @ self.w + self.b


def _design(feats: dict[str, np.ndarray], blocks: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    x = np.concatenate([feats[k] for k in blocks], axis=1)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    scale = np.concatenate([np.full(feats[k].shape[1], 1 / np.sqrt(feats[k].shape[1])) for k in blocks])
    return (x - mu) / sd * scale, mu, sd, scale


def group_folds(groups: np.ndarray) -> list[np.ndarray]:
    """Leave-one-group-out when there are at most 6 groups, else 5 folds of whole groups (deterministic)."""
    names = sorted(set(groups.tolist()))
    k = len(names) if len(names) <= 6 else 5
    fold_of = {g: i % k for i, g in enumerate(names)}
    f = np.array([fold_of[g] for g in groups.tolist()])
    return [f == i for i in range(k)]


class Designs:
    """Standardised design matrices and their Gram matrices per feature set, computed once and shared by the maps
    fitted on the same rows."""

    def __init__(self, feats: dict[str, np.ndarray]) -> None:
        self.feats = feats
        self._d: dict[tuple[str, ...], tuple[np.ndarray, ...]] = {}
        self._g: dict[tuple[str, ...], np.ndarray] = {}

    def design(self, blocks: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        if blocks not in self._d:
            self._d[blocks] = _design(self.feats, blocks)
        return self._d[blocks]

    def gram(self, blocks: tuple[str, ...]) -> np.ndarray:
        if blocks not in self._g:
            a = self.design(blocks)[0]
            self._g[blocks] = a @ a.T
        return self._g[blocks]


def _solve(gram: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Dual ridge coefficients (targets centred)."""
    return np.linalg.solve(gram + lam * np.eye(len(gram)), y - y.mean(0))


def _heldout(gram: np.ndarray, y: np.ndarray, folds: list[np.ndarray], lam: float) -> list[np.ndarray]:
    """Per fold, the ridge predictions for the held-out rows from a fit on the others."""
    return [gram[np.ix_(test, ~test)] @ _solve(gram[np.ix_(~test, ~test)], y[~test], lam) + y[~test].mean(0)
            for test in folds]


def fit_ridges(feats: dict[str, np.ndarray] | Designs, targets: dict[str, tuple[np.ndarray, bool]], groups: np.ndarray,
               feature_sets: tuple[tuple[str, ...], ...] = FEATURE_SETS, lambdas: tuple[float, ...] = LAMBDAS
               ) -> dict[str, tuple[RidgeMap, dict[str, Any]]]:
    """Maps from the same rows to several targets ``{name: (y (N, k), zero)}``, each with its own feature blocks and
    ridge strength chosen by group-wise cross-validation, then refitted on all rows.

    Candidates: every feature set at every ridge strength, the training mean (``mean``) and, for targets that are
    corrections (``zero`` True), no correction at all (``zero``). A target's CV score is the mean over its columns that
    vary of the held-out MSE divided by the column's variance (features standardised once on all rows). With a single
    group there is nothing to cross-validate: the first feature set at the middle ridge strength is taken.
    """
    designs = feats if isinstance(feats, Designs) else Designs(feats)
    names = list(targets)
    ys = np.concatenate([targets[n][0] for n in names], axis=1)
    spans, i = {}, 0
    for n in names:
        spans[n] = slice(i, i + targets[n][0].shape[1])
        i = spans[n].stop
    var = ys.var(0)
    folds = group_folds(groups)
    cv: dict[str, dict[str, float]] = {n: {} for n in names}

    def score(name: str, err: np.ndarray) -> float:
        sl = spans[name]
        cols = var[sl] > 1e-9
        return float((err[sl][cols] / len(ys) / var[sl][cols]).mean()) if cols.any() else 0.0

    def add(label: str, preds: list[np.ndarray], only: list[str] | None = None) -> None:
        err = sum(((p - ys[test]) ** 2).sum(0) for p, test in zip(preds, folds))
        for n in only or names:
            cv[n][label] = score(n, err)

    if len(folds) > 1:
        add("mean", [np.tile(ys[~test].mean(0), (int(test.sum()), 1)) for test in folds])
        add("zero", [np.zeros((int(test.sum()), ys.shape[1])) for test in folds], [n for n in names if targets[n][1]])
        for fs in feature_sets:
            gram = designs.gram(fs)
            for lam in lambdas:
                add(f"{'+'.join(fs)}@{lam:g}", _heldout(gram, ys, folds, lam))
    default = f"{'+'.join(feature_sets[0])}@{lambdas[len(lambdas) // 2]:g}"
    out = {}
    for n in names:
        y = targets[n][0]
        best = min(cv[n], key=lambda k: cv[n][k]) if cv[n] else default
        info = {"cv_score": cv[n], "chosen": best}
        if best in ("mean", "zero"):
            const = y.mean(0) if best == "mean" else np.zeros(y.shape[1])
            empty = np.zeros(0)
            out[n] = RidgeMap((), 0.0, empty, empty, empty, np.zeros((0, y.shape[1])), const), info
            continue
        blocks, lam = tuple(best.split("@")[0].split("+")), float(best.split("@")[1])
        a, mu, sd, scale = designs.design(blocks)
        out[n] = RidgeMap(blocks, lam, mu, sd, scale, a.T @ _solve(designs.gram(blocks), y, lam), y.mean(0)), info
    return out


def morph_calibration(designs: Designs, m: RidgeMap, y: np.ndarray, groups: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per morph, from the map's held-out estimates (leave-identity-out, the chosen blocks and ridge strength):

    - the **gain**: the slope of the estimates on the ground truth, floored at ``MIN_GAIN``; 1 where the map is constant
      or the morph never varies. A ridge map shrinks towards the mean, and by how much depends on how clearly a domain's
      pictures show a morph, so two domains' raw estimates of the same motion differ in scale (a cross-domain
      expression distance then measures the scales). Dividing the estimate's deviation from the mean by this slope
      puts every domain on the ground truth's morph units; the floor bounds how much noise a barely visible morph can
      gain.
    - the **reliability**: the correlation of estimate and truth once each identity's mean is taken out of both (so
      it scores the changes within a face, what the relative metrics read, not who the face is), 0 where negative or
      undefined. The expression distances weight each morph by its square (:func:`expression_weights`)."""
    folds = group_folds(groups)
    if not m.blocks or len(folds) < 2:
        return np.ones(y.shape[1]), np.zeros(y.shape[1])
    pred = np.empty_like(y)
    for p, test in zip(_heldout(designs.gram(m.blocks), y, folds, m.lam), folds):
        pred[test] = p
    return heldout_calibration(pred, y, groups)


def heldout_calibration(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-morph gains and reliabilities (see :func:`morph_calibration`) from any estimator's held-out estimates
    ``pred`` of ``y`` (rows grouped by identity)."""
    gains, reliability = np.ones(y.shape[1]), np.zeros(y.shape[1])
    var = y.var(0)
    cols = var > 1e-9
    slope = ((pred - pred.mean(0)) * (y - y.mean(0))).mean(0)[cols] / var[cols]
    gains[cols] = np.clip(slope, MIN_GAIN, None)
    pc, yc = pred.copy(), y.copy()
    for g in np.unique(groups):
        rows = groups == g
        pc[rows] -= pc[rows].mean(0)
        yc[rows] -= yc[rows].mean(0)
    norm = np.sqrt((pc ** 2).sum(0) * (yc ** 2).sum(0))
    ok = norm > 1e-12
    reliability[ok] = np.clip((pc * yc).sum(0)[ok] / norm[ok], 0, 1)
    return gains, reliability


def expression_weights(reliability: np.ndarray) -> np.ndarray:
    """Per-morph weights of the expression distances: the share of a morph's within-face variation the map's held-out
    estimates explain (reliability squared). A morph the map cannot read in a domain adds only its noise to a
    distance, and with 17 morphs of which a handful are readable that noise decides the ranking."""
    return np.square(np.clip(reliability, 0, 1))


@dataclass
class PoseVectorRidge:
    """Per domain, a :class:`RidgeMap` to the 17 morphs (with per-morph gains and reliabilities, :func:`morph_calibration`) and one per angle
    to its correction (added to the fitted angle of the ``angles`` block), plus a domain classifier (a
    :class:`RidgeMap` to one-hot domains)."""

    maps: dict[str, dict[str, RidgeMap]]  # domain -> {"morphs", "yaw", "pitch", "roll"} (:data:`PARTS`)
    classifier: RidgeMap | None
    info: dict[str, Any] = field(default_factory=dict)
    gains: dict[str, np.ndarray] = field(default_factory=dict)  # domain -> (17,) morph gains (absent: ones)
    reliability: dict[str, np.ndarray] = field(default_factory=dict)  # domain -> (17,) held-out within-face r

    @property
    def domains(self) -> list[str]:
        return sorted(self.maps)

    @classmethod
    def fit(cls, feats: dict[str, np.ndarray], y: np.ndarray, domains: np.ndarray, groups: np.ndarray,
            feature_sets: tuple[tuple[str, ...], ...] = FEATURE_SETS) -> PoseVectorRidge:
        """``feats`` blocks ``(N, d)``, ``y`` ``(N, 20)`` pose vectors, ``domains`` and ``groups`` (identity) ``(N,)``;
        rows with a NaN feature or target are ignored. ``feature_sets``: the candidate block sets of every map (the
        domain classifier reads :data:`BLOCKS`)."""
        ok = np.isfinite(y).all(1) & np.all([np.isfinite(v).all(1) for v in feats.values()], axis=0)
        maps: dict[str, dict[str, RidgeMap]] = {}
        info: dict[str, Any] = {}
        gains: dict[str, np.ndarray] = {}
        reliability: dict[str, np.ndarray] = {}
        for d in sorted(set(domains[ok].tolist())):
            rows = ok & (domains == d)
            f = {k: v[rows] for k, v in feats.items()}
            targets = {"morphs": (y[rows, :N_MORPHS], False),
                       **{a: (y[rows, N_MORPHS + i:N_MORPHS + i + 1] - f["angles"][:, i:i + 1], True)
                          for i, a in enumerate(ANGLES)}}
            designs = Designs(f)
            fitted = fit_ridges(designs, targets, groups[rows], feature_sets)
            maps[d] = {p: m for p, (m, _) in fitted.items()}
            gains[d], reliability[d] = morph_calibration(designs, maps[d]["morphs"], targets["morphs"][0],
                                                         groups[rows])
            info[d] = {"frames": int(rows.sum()), "identities": len(set(groups[rows].tolist())),
                       **{p: i for p, (_, i) in fitted.items()}, "morph_gains": gains[d].round(4).tolist(),
                       "morph_reliability": reliability[d].round(4).tolist()}
            log.info("corpus ridge map %s (%d frames, %d identities): %s", d, info[d]["frames"],
                     info[d]["identities"], ", ".join(f"{p} {info[d][p]['chosen']}" for p in PARTS))
        classifier = None
        if len(maps) > 1:
            names = sorted(maps)
            onehot = (domains[ok][:, None] == np.array(names)[None]).astype(np.float64)
            one_group = np.zeros(int(ok.sum()))  # a fixed ridge, no model selection
            classifier = fit_ridges({k: v[ok] for k, v in feats.items()}, {"domain": (onehot, False)}, one_group,
                                    (BLOCKS,), (1.0,))["domain"][0]
        return cls(maps, classifier, info, gains, reliability)

    def domain_of(self, feats: dict[str, np.ndarray], ok: np.ndarray) -> str:
        names = self.domains
        if self.classifier is None or not ok.any():
            return names[0]
        score = self.classifier.predict({k: v[ok] for k, v in feats.items()})
        return names[int(np.argmax(np.bincount(score.argmax(1), minlength=len(names))))]

    def predict(self, feats: dict[str, np.ndarray], domain: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """``(T, 20)`` pose vectors (NaN rows where a feature is missing), the ok mask and the domain used (the
        classifier's choice unless ``domain`` is given)."""
        ok = np.all([np.isfinite(v).all(1) for v in feats.values()], axis=0)
        domain = domain or self.domain_of(feats, ok)
        out = np.full((len(ok), POSE_DIM), np.nan)
        if ok.any():
            f = {k: v[ok] for k, v in feats.items()}
            m = self.maps[domain]
            raw = m["morphs"].predict(f)
            gain = self.gains.get(domain, np.ones(N_MORPHS))
            # not clipped to [0, 1]: near a bound (most morphs rest at 0) clipping rectifies the estimate's noise,
            # which shrinks a domain's changes and breaks the cross-domain scale the gains set
            out[ok, :N_MORPHS] = m["morphs"].b + (raw - m["morphs"].b) / gain
            out[ok, N_MORPHS:] = f["angles"] + np.concatenate([m[a].predict(f) for a in ANGLES], axis=1)
        return out, ok, domain

    # -- persistence (numpy arrays only, so a cached map loads without pickle) --------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        named = [(f"map.{d}.{part}", m) for d, parts in self.maps.items() for part, m in parts.items()]
        if self.classifier is not None:
            named.append(("classifier", self.classifier))
        arrays: dict[str, np.ndarray] = {"info": np.array(json.dumps(self.info, sort_keys=True)),
                                         **{f"gains.{d}": g for d, g in self.gains.items()},
                                         **{f"reliability.{d}": r for d, r in self.reliability.items()}}
        for name, m in named:
            arrays[f"{name}.blocks"] = np.array(m.blocks)
            arrays[f"{name}.lam"] = np.array(m.lam)
            for k in ("mu", "sd", "scale", "w", "b"):
                arrays[f"{name}.{k}"] = getattr(m, k)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PoseVectorRidge:
        def one(name: str) -> RidgeMap:
            return RidgeMap(tuple(str(b) for b in arrays[f"{name}.blocks"]), float(arrays[f"{name}.lam"]),
                            *(np.asarray(arrays[f"{name}.{k}"]) for k in ("mu", "sd", "scale", "w", "b")))

        doms = sorted({k.split(".")[1] for k in arrays if k.startswith("map.")})
        info = json.loads(str(arrays["info"])) if "info" in arrays else {}
        return cls({d: {p: one(f"map.{d}.{p}") for p in PARTS} for d in doms},
                   one("classifier") if "classifier.w" in arrays else None, info,
                   {d: np.asarray(arrays[f"gains.{d}"]) for d in doms if f"gains.{d}" in arrays},
                   {d: np.asarray(arrays[f"reliability.{d}"]) for d in doms if f"reliability.{d}" in arrays})
