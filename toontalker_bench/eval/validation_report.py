"""The metric validation report (docs/metrics-validation.md) as Markdown, from the figures ``validate`` measures."""

from __future__ import annotations

from typing import Any

from .verdicts import (
    CORPUS,
    EXPRESSION_R_TARGET,
    GENERIC,
    IDENTITY_AUC_TARGET,
    MEDIAPIPE,
    POSE_MAE_TARGET_DEG,
    _f,
    validation_problems,
)


def _angles(x: dict[str, float] | None) -> str:
    return " | ".join(_f(None if x is None else x[a]) for a in ("yaw", "pitch", "roll"))


def render_motion(m: dict[str, Any]) -> list[str]:
    from ..faces.bfm import backend_name

    backends, ids, spf = m["backends"], m["identities"], m["s_per_frame"]
    doms = sorted(ids)
    head = m["headline_backend"]
    corpus = m["corpus"]
    lines = [
        "## Head pose (APD) and expression (AED): motion estimators vs ground truth", "",
        f"Every clip of {m['source']} ({m['clips']} clips, {m['frames_per_clip']} frames per clip, {m['frames']} "
        "frames): " + "; ".join(f"{d}: {ids[d]['all']} identities with ground truth ({ids[d]['train']} train, "
                                 f"{ids[d]['test']} test)" for d in doms) + ".",
        "Pose: mean absolute error of yaw, pitch, roll in degrees against the rendered rotation. Expression probe: a "
        "ridge map from the backend's expression output to the 17 ground-truth morphs, fitted on train clips, "
        "Pearson r on test clips, averaged over the morphs that vary there. Seconds per frame on this machine "
        "(face analysis = RetinaFace + dlib 68 + dlib 5, shared by every backend but `mediapipe`, which finds "
        "faces itself): "
        f"face analysis {spf['face_analysis']:.4f} s; fits: "
        + ", ".join(f"`{k}` {v:.4f} s" for k, v in spf.items() if k != "face_analysis") + ".", "",
        "### Summary (test clips: identities never seen by any fitted map)", "",
        ("| backend | domain | MAE yaw | MAE pitch | MAE roll | MAE mean | expression probe r | direct r | "
         "s/frame (fit; face analysis above) |"),
        "|---|---|---|---|---|---|---|---|---|"]
    shown = (head, GENERIC, backend_name("full")) if head != GENERIC else (GENERIC,)
    for name in (*shown, MEDIAPIPE):
        if name not in backends:
            continue
        label = f"`{corpus['backend']}` (corpus-specific)" if name == CORPUS else f"`{name}`"
        for d in doms:
            x = backends[name].get(d)
            if x is None:
                continue
            lines.append(f"| {label} | {d} | {_angles(x['pose_mae_deg_test'])} | {_f(x['pose_mae_deg_test_mean'])} | "
                         f"{_f(x.get('expression_probe_r_mean'))} | {_f(x.get('expression_direct_r_mean'))} | "
                         f"{spf[name]:.4f} |")
    lines += [
        "", ("Direct r: the backend's own morph output against the ground truth, no probe (corpus-ridge only: its "
             "expression output is in morph units)."), "",
        "### Generic estimators: what each change does (all clips, no fitting on the corpus)", "",
        ("| fit | domain | MAE yaw | MAE pitch | MAE roll | MAE mean | MAE mean, test clips | calibrated MAE test | "
         "r yaw | r pitch | r roll | expression probe r |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, per in backends.items():
        if name == CORPUS:
            continue
        for d in doms:
            x = per[d]
            pc = x["pose_corr"] or {}
            lines.append(f"| `{name}` | {d} | {_angles(x['pose_mae_deg'])} | {_f(x['pose_mae_deg_mean'])} | "
                         f"{_f(x['pose_mae_deg_test_mean'])} | {_f(x.get('pose_mae_deg_calibrated'))} | "
                         + " | ".join(_f(pc.get(a)) for a in ("yaw", "pitch", "roll"))
                         + f" | {_f(x.get('expression_probe_r_mean'))} |")
    first = backends[next(iter(backends))][doms[0]] if backends else None
    lines += [
        "", "`bfm3ddfa`: the 68 points fitted as fixed BFM surface points (3DDFA's convention; the estimator as first "
        "released). `-jaw-y`: the 17 jaw-contour points constrain only the image-vertical coordinate (dlib puts them "
        "on the visible silhouette, which slides sideways across the cheek as the head turns). `-inner51`: the contour "
        "dropped. `+seqshape`: one identity (shape) code per clip, shared by its frames. Calibrated: a per-angle gain "
        "and offset fitted on train clips, applied to test clips (separates a scale/offset mismatch between the "
        "corpus's heads and the BFM from noise). `mediapipe`: MediaPipe's Face Landmarker, pose from its 468 mesh "
        "landmarks' image positions against the canonical face mesh (scaled orthographic camera), the 52 "
        "blendshapes as expression; `mediapipe-matrix`: the same readings with the angles of its facial "
        "transformation matrix instead (measured for comparison, not a backend). r: Pearson correlation with the "
        "ground-truth angle."
        + ("" if first is None else " Ground-truth ranges: " + "; ".join(
            f"{d} yaw {backends[GENERIC][d]['gt_range_deg']['yaw'][0]:.0f} to "
            f"{backends[GENERIC][d]['gt_range_deg']['yaw'][1]:.0f}, pitch "
            f"{backends[GENERIC][d]['gt_range_deg']['pitch'][0]:.0f} to "
            f"{backends[GENERIC][d]['gt_range_deg']['pitch'][1]:.0f}, roll "
            f"{backends[GENERIC][d]['gt_range_deg']['roll'][0]:.0f} to "
            f"{backends[GENERIC][d]['gt_range_deg']['roll'][1]:.0f} degrees"
            for d in doms if backends.get(GENERIC, {}).get(d, {}).get("gt_range_deg")) + "."), ""]
    if m.get("mediapipe_unavailable"):
        lines += [f"`{MEDIAPIPE}` not measured: {m['mediapipe_unavailable']}", ""]
    lines += ["### The corpus-specific backend", ""]
    if CORPUS in backends:
        maps = corpus.get("maps") or {}
        lines += [
            (f"`{corpus['backend']}` is fitted on the train split of the dataset it evaluates (here the one validated; "
             "it is not a general estimator, and its values are comparable only between runs on that dataset). "
             "Features: the `bfm3ddfa-jaw-y` fit (angles, 10-D code), per-region landmark measures, the 68 landmarks "
             "rotated back to frontal, HOG of the aligned face; per domain a ridge map to the 17 morphs and one per "
             "angle to the correction of the fitted angle, feature blocks and ridge strength chosen by "
             "leave-identity-out cross-validation on the train clips (`zero` = no correction, `mean` = a constant). "
             f"Fitted in {corpus['fit_seconds']} s (0 when loaded from the cache)."), "",
            ("| domain | train frames | train identities | morphs | yaw | pitch | roll | "
             "domain classifier (test clips) |"),
            "|---|---|---|---|---|---|---|---|"]
        for d in doms:
            mp = maps.get(d, {})
            x = backends[CORPUS].get(d, {})
            lines.append(f"| {d} | {mp.get('frames', 'n/a')} | {mp.get('identities', 'n/a')} | "
                         + " | ".join(f"`{mp.get(k, 'n/a')}`" for k in ("morphs", "yaw", "pitch", "roll"))
                         + f" | {x.get('domain_correct_test_clips', 'n/a')} clips right |")
    else:
        lines.append(f"Not fitted: {corpus.get('fallback_reason')}; `corpus-ridge` falls back to `{GENERIC}` (values "
                     "carry that name).")
    lines += ["", "### Per morph (test clips)", "",
              "| backend | domain | test frames | " + " | ".join(_MORPH_SHORT) + " |",
              "|---|---|---|" + "---|" * len(_MORPH_SHORT)]
    for name, key in ((GENERIC, "expression_probe_r"), (MEDIAPIPE, "expression_probe_r"),
                      (CORPUS, "expression_probe_r"), (CORPUS, "expression_direct_r")):
        for d in doms:
            x = backends.get(name, {}).get(d)
            if x is None or key not in x:
                continue
            label = f"`{name}` {'probe' if key == 'expression_probe_r' else 'direct'}"
            lines.append(f"| {label} | {d} | {x['test_frames']} | "
                         + " | ".join(_f(x[key].get(mo)) for mo in _morph_names()) + " |")
    lines += ["", "n/a: the morph does not vary on that domain's test frames (or the prediction is constant)."]
    return lines


def _morph_names() -> tuple[str, ...]:
    from ..faces.pose import MORPHS

    return MORPHS


_MORPH_SHORT = ("blink L", "blink R", "wide L", "wide R", "brow up L", "brow up R", "brow down L", "brow down R",
                "mouth open", "smile", "frown", "a", "i", "u", "e", "o", "eye happy")


def mark_tables(text: str, figures: str) -> str:
    """``text`` with ``<!-- figures: FIGURES -->`` above every table: the file its figures come from
    (``tests/test_docs_sources.py`` checks each figure shown against it)."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            out.append(f"<!-- figures: {figures} -->")
        out.append(line)
    return "\n".join(out)


def render(r: dict[str, Any], figures: str | None = None) -> str:
    """The report's Markdown; ``figures``: the path of the JSON the figures are written to, named above each table."""
    m, fid, ident = r["motion"], r["fid"], r["identity"]
    lines = [
        "# Metric validation",
        "",
        "Generated by `toontalker-bench evaluate validate-metrics`; every figure below is measured, on "
        f"{r['source']} (identity and FID: {r['n_clips']} clips, {r['n_frames']} frames: "
        + ", ".join(f"{k} {v} clips" for k, v in r["clips_per_domain"].items()) + f"), in {r['seconds']} s ("
        + ", ".join(f"{k} {v} s" for k, v in r.get("seconds_per_part", {}).items()) + ").",
        f"Faces: `{r['face_backend']}`.",
        (f"Frames as the board reads a {r['output_size']}-px method output: shrunk to {r['output_size']} px (area) and "
         f"enlarged to the {r.get('analysis_size') or 256}-px analysis size (bicubic), the sensitivity suite's "
         "perturbed answers included." if r.get("output_size", 256) < (r.get("analysis_size") or 256)
         else "Frames at the dataset's size."),
        "Train/test: identity-disjoint (the built dataset's split, or a fixed hash of the identity for the corpus).",
        "",
        *render_motion(m),
        "",
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
    text = "\n".join(lines) + "\n"
    return mark_tables(text, figures) if figures else text


def render_sensitivity(sens: dict[str, Any] | None) -> list[str]:
    """The sensitivity suite's tables: each metric's value at each strength of each injected error, per domain."""
    if not sens:
        return ["", "## Sensitivity to injected errors", "", "Not measured (no built demo dataset to re-render).", ""]
    from ..metrics import metric_class
    from .sensitivity import TOLERANCE

    lv = sens["levels"]
    lines = ["", "## Sensitivity to injected errors", "",
             f"The exact answer (oracle-render) to {sum(sens['cases'].values())} protocol pairs "
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
            lines.append(f"| `{m}` | {res['own_error']} | " + " | ".join(cells) + " |")
        lines.append("")
    groups = list(sens["values"])
    lines += [f"| metric | own error | monotone | must ignore | cross-sensitivity ({'; '.join(groups)}) | flat |",
              "|---|---|---|---|---|---|"]
    for m, res in sens["metrics"].items():
        cross = "; ".join(", ".join(f"{k} {_f(v, 2)}" for k, v in (res["domains"].get(g, {}).get("cross") or {}
                                                                      ).items()) or "–" for g in groups)
        lines.append(f"| `{m}` | {res['own_error']} | {'yes' if res['monotone'] else 'NO'} | "
                     f"{', '.join(metric_class(m).ignores) or '–'} | {cross} | {'yes' if res['flat'] else 'NO'} |")
    return lines + [""]


def render_verdicts(r: dict[str, Any]) -> list[str]:
    """What the leaderboard marks: per metric and task, why it is not validated on this data (if it is not)."""
    from ..core.domains import TASKS

    lines = ["## What the leaderboard marks as not validated", "",
             f"Targets: pose MAE <= {POSE_MAE_TARGET_DEG:g} degrees (APD), expression probe r >= "
             f"{EXPRESSION_R_TARGET:g} (AED), identity AUC >= {IDENTITY_AUC_TARGET:g} ({r.get('identity_backend')}, "
             "CSIM / aed_id), in every domain a task reads, and the sensitivity suite's verdicts. Pixel metrics need "
             "none.", "", "| metric | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    from ..metrics import metric_classes

    for m in (c.name for c in metric_classes() if c.validation is not None and "faces" in c.needs):
        cells = []
        for t in TASKS:
            problems = validation_problems(r, m, t)
            cells.append("validated" if not problems else "; ".join(problems))
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    return lines + [""]
