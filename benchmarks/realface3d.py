"""The real 3-D heads of the demo corpus: fit quality, render cost, and the pose estimator on rendered frames.

Per demo photo: BFM fit residual (RMS landmark error / inter-ocular distance) and the photo's pose; CPU time per
640x360 frame of a talking, turning head (median over ``--frames`` renders, OpenCV on one thread, after a warm-up);
the BFM fit on the renderer's ground-truth landmarks against the rendered angles (the ground truth's consistency
with the estimator's conventions); and the project's pose estimator on the rendered pixels (dlib's frontal detector
and 68-point predictor, then ``metrics.bfm.BFM``): MAE and Pearson r against the rendered angles, the yaw error's
dependence on the yaw away from the photo's pose, and the same fit with dlib's jaw contour (points 0-16) replaced
by the ground truth's, which isolates the contour convention (dlib: the visible silhouette; the BFM: fixed surface
points). Frames: talking motion as the corpus draws it (yaw up to 26 degrees, pitch 12, roll 8 around the photo's
pose), every 10th of ``--frames * 10``.

    python -m benchmarks.realface3d [--frames 40] [--out benchmarks/results/realface3d.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def measure(n_frames: int) -> dict[str, Any]:
    import cv2
    import dlib

    from toontalker_bench.assets import require
    from toontalker_bench.data.synth.motion import talking_motion
    from toontalker_bench.data.synth.realface3d import RealHead, fit_photo, usable_photos
    from toontalker_bench.eval.validate import pearson
    from toontalker_bench.faces.bfm import BFM

    cv2.setNumThreads(1)
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(str(require("dlib-landmarks68", "benchmark")))
    bfm = BFM()
    size = (640, 360)
    photos, rejected = usable_photos()
    out: dict[str, Any] = {"photos": {}, "rejected": rejected}
    rows = []  # relative yaw, gt angles (3), estimated (3), estimated with the ground-truth contour (3), gt-fit (3)
    for k, name in enumerate(photos):
        t0 = time.process_time()
        fit_photo(name)  # a fresh build (the photo's dlib landmarks are cached), timed
        build_s = time.process_time() - t0
        head = RealHead.from_photo(name)
        mot = talking_motion(np.random.default_rng(k), 10 * n_frames, 25.0, yaw=26.0, pitch=12.0, roll=8.0)[::10]
        mot[:, 17:] += head.pose0
        mot = head.clamp(mot)
        fr = head.framing(size, face_px=125)
        head.render(mot[0], size, fr)
        cpu, gts, lms, found = [], [], [], 0
        for m in mot:
            t = time.process_time()
            frame, lm, _ = head.render(m, size, fr)
            cpu.append(time.process_time() - t)
            faces = det(frame, 1)
            est = hyb = np.full(3, np.nan)
            if faces:
                found += 1
                p = np.array([[q.x, q.y] for q in pred(frame, max(faces, key=lambda r: r.area())).parts()], float)
                h = p.copy()
                h[:17] = lm[:17]
                est, hyb = (a[0] for a in np.split(bfm.fit(np.stack([p, h])).angles, 2))
            gts.append(m[17:])
            lms.append(lm)
            rows.append([m[17] - head.pose0[0], *m[17:], *est, *hyb])
        gt_fit = np.abs(bfm.fit(np.stack(lms)).angles - np.stack(gts))
        out["photos"][name] = {
            "identity": head.identity, "fit_residual_iod": round(head.residual, 4),
            "pose0_deg": [round(float(v), 2) for v in head.pose0], "build_cpu_s": round(build_s, 2),
            "render_cpu_ms_median": round(1000 * float(np.median(cpu)), 1), "dlib_found": found / len(mot),
            "gt_landmark_fit_mae_deg": [round(float(v), 2) for v in gt_fit.mean(0)],
            "gt_landmark_fit_max_deg": [round(float(v), 2) for v in gt_fit.max(0)],
        }
    r = np.array(rows)
    rel, gt, est, hyb = r[:, 0], r[:, 1:4], r[:, 4:7], r[:, 7:10]
    ok = np.isfinite(est).all(1)
    err, err_h = est[ok] - gt[ok], hyb[ok] - gt[ok]
    names = ("yaw", "pitch", "roll")
    out["estimator"] = {
        "frames": int(len(r)), "found": int(ok.sum()),
        "mae_deg": {a: round(float(v), 2) for a, v in zip(names, np.abs(err).mean(0), strict=True)},
        "mae_deg_mean": round(float(np.abs(err).mean()), 2),
        "pearson_r": {a: round(pearson(est[ok, i], gt[ok, i]), 3) for i, a in enumerate(names)},
        "yaw_error_slope_vs_relative_yaw": round(float(np.polyfit(rel[ok], err[:, 0], 1)[0]), 3),
        "yaw_mae_by_relative_yaw": {f"{lo}-{hi}": round(float(np.abs(err[(np.abs(rel[ok]) >= lo)
                                                                           & (np.abs(rel[ok]) < hi), 0]).mean()), 2)
                                    for lo, hi in ((0, 10), (10, 20), (20, 31))},
        "with_gt_contour_mae_deg": {a: round(float(v), 2) for a, v in zip(names, np.abs(err_h).mean(0), strict=True)},
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="frames per photo")
    ap.add_argument("--out", default="benchmarks/results/realface3d.json")
    args = ap.parse_args()
    from .common import load_avg, machine

    t0 = time.time()
    res = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "load_avg_start": load_avg(),
           **measure(args.frames)}
    res["seconds"] = round(time.time() - t0, 1)
    res["load_avg_end"] = load_avg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("photos", "estimator", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
