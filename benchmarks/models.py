"""Training step time (forward + backward + optimiser steps), inference frames/s and peak memory of registered methods.

Driven by the method registry: any method name with a profile YAML works (``--methods toontalker,fomm``); each
(method, profile) runs in its own subprocess so the peak-memory figure (max RSS on CPU, ``max_memory_allocated`` on
CUDA) belongs to it alone. ``--amp on`` times the same steps under bfloat16 autocast (what the trainer uses on CUDA);
records are keyed by method/profile/device/amp. Inputs are random images of the profile's size for both domains. Results are merged into
``benchmarks/results/models.json`` keyed by method/profile/device, so runs for different methods do not overwrite
each other. The machine's load average is recorded before and after each measurement: on a shared CPU, timings are
only as good as the machine was quiet. Step time is the median of ``--steps`` steps and inference frames/s the median of
``--repeats`` ``animate`` calls, each after one untimed warm-up.

    python -m benchmarks.models [--methods toontalker] [--profiles tiny,paper] [--device cpu] [--steps 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import cpu_model

RESULTS = Path(__file__).parent / "results" / "models.json"

# Per-profile measurement sizes: pairs per domain in a training step and driving frames for inference. The paper
# profiles' batch sizes are GPU-sized, so CPU measurements use batch 1 and say so in the record; on CUDA every profile
# runs at its own train.batch_size.
BATCH_CPU = {"tiny": None, "paper": 1}  # None = the profile's train.batch_size
FRAMES = {"tiny": 16, "paper": 4}


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _loss_backend(model: Any) -> str | None:
    """The backend of the method's reconstruction loss (kept in a list so it is not a submodule), if it has one."""
    from toontalker_bench.models.losses import ReconstructionLoss

    found = [v[0] for v in vars(model).values() if isinstance(v, list) and v and isinstance(v[0], ReconstructionLoss)]
    return found[0].backend if found else None


def measure(method: str, profile: str, device: str, steps: int, repeats: int = 3, amp: bool = False) -> dict[str, Any]:
    """Build ``method`` with ``profile`` and time its training step (``steps`` times) and ``animate`` (``repeats``
    times) on ``device``, under bfloat16 autocast when ``amp``; medians are reported with every value."""
    import contextlib

    import numpy as np
    import torch

    from toontalker_bench.core.domains import DOMAINS
    from toontalker_bench.core.errors import UserError
    from toontalker_bench.faces.pose import POSE_DIM
    from toontalker_bench.models.registry import build_method

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports alone
    torch.manual_seed(0)
    model = build_method(method, profile).to(device)
    note = None
    if hasattr(model, "estimator") and not _importable("dlib"):
        # the pose-map statistics AnimeCeleb gathers while training need the dlib/3DMM fit; a machine without dlib
        # times the networks with a stand-in estimator and says so
        from toontalker_bench.faces.pose_map import N_FEATURES

        model._estimator = lambda frames: np.zeros((len(frames), N_FEATURES), np.float32)
        note = "3DMM pose-feature fit replaced by zeros (dlib not installed): network time only"
    cfg = model.cfg
    size = model.size
    cuda = device.startswith("cuda")
    batch_size = (None if cuda else BATCH_CPU.get(profile)) or int(cfg.get("train", {}).get("batch_size", 4))
    caps = model.capabilities
    batch = {d: {"source": torch.rand(batch_size, 3, size, size, device=device),
                 "driving": torch.rand(batch_size, 3, size, size, device=device),
                 "motion_source": torch.zeros(batch_size, POSE_DIM, device=device),
                 "motion_driving": torch.zeros(batch_size, POSE_DIM, device=device),
                 "motion_is_true": torch.ones(batch_size, dtype=torch.bool, device=device)} for d in DOMAINS}
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp)
    load = [os.getloadavg()[0]]
    step_times = []
    if caps.trainable:
        for step in range(steps + 1):  # the first step warms up and is not counted
            sync()
            t = time.perf_counter()
            # a step index past any warm-up stage, so the full loss (e.g. stage 2) is timed
            with autocast():
                model.training_step(batch, 10 ** 6 + step)
            sync()
            if step:
                step_times.append(time.perf_counter() - t)
    n_frames = FRAMES.get(profile, 8)
    src = torch.rand(3, size, size, device=device)
    drv = torch.rand(n_frames, 3, size, size, device=device)
    drv_dom = "real" if caps.cross_domain else "cartoon"
    model.eval()
    infer_s = []
    for dom in dict.fromkeys([drv_dom, "cartoon"]):  # an untrained model may lack a map the cross-domain path needs
        try:
            with torch.no_grad(), autocast():
                model.animate(src, drv[:2], source_domain="cartoon", driving_domain=dom)  # warm-up
        except UserError as e:
            note = f"{note + '; ' if note else ''}cartoon->{dom} unavailable untrained: {e}"
            continue
        drv_dom = dom
        for _ in range(repeats):
            sync()
            t = time.perf_counter()
            with torch.no_grad(), autocast():
                model.animate(src, drv, source_domain="cartoon", driving_domain=dom)
            sync()
            infer_s.append(time.perf_counter() - t)
        break
    load.append(os.getloadavg()[0])
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
        peak_kind = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "process max RSS"
    return {
        "method": method, "profile": profile, "device": device, "amp": "bf16" if amp else "off", "size": size,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "reconstruction_loss": _loss_backend(model),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "train_batch_per_domain": batch_size if caps.trainable else None,
        "train_step_s_median": round(statistics.median(step_times), 4) if step_times else None,
        "train_step_s_all": [round(s, 4) for s in step_times],
        "animate_frames": n_frames, "animate_domains": f"cartoon->{drv_dom}" if infer_s else None,
        "animate_note": note, "animate_fps": round(n_frames / statistics.median(infer_s), 3) if infer_s else None,
        "animate_fps_all": [round(n_frames / t, 3) for t in infer_s],
        "peak_memory_mib": round(peak, 1), "peak_memory_kind": peak_kind,
        "rss_after_imports_mib": round(rss_before, 1),
        "torch_threads": torch.get_num_threads(), "load_avg_1min_before_after": [round(x, 2) for x in load],
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform(), "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="toontalker", help="comma-separated registered method names")
    ap.add_argument("--profiles", default="tiny,paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    ap.add_argument("--repeats", type=int, default=3, help="timed animate calls (after one warm-up call)")
    ap.add_argument("--amp", default="off", choices=["off", "on", "both"], help="off, on, or both: bfloat16 autocast around step and animate")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "PROFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:  # child process: one measurement, JSON on stdout
        print(json.dumps(measure(args.one[0], args.one[1], args.device, args.steps, args.repeats, args.amp == "on")))
        return 0
    from toontalker_bench.core.io import write_json

    records = json.loads(args.out.read_text())["results"] if args.out.is_file() else []
    failed = 0
    amps = {"off": ["off"], "on": ["on"], "both": ["off", "on"]}[args.amp]
    runs = [(m, p, a) for m in args.methods.split(",") if m for p in args.profiles.split(",") if p for a in amps]
    for method, profile, amp in runs:
        cmd = [sys.executable, "-m", "benchmarks.models", "--one", method, profile, "--device", args.device,
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--amp", amp]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1])
        if proc.returncode:
            print(f"{method}/{profile} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            failed += 1
            continue
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(rec))
        key = (method, profile, args.device, rec["amp"])
        records = [r for r in records if (r["method"], r["profile"], r["device"], r.get("amp", "off")) != key]
        records.append(rec)
    records.sort(key=lambda r: (r["method"], r["profile"], r["device"], r.get("amp", "off")))
    write_json(args.out, {"results": records})
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
