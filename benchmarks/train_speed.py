"""Training speed of each learned method's ``tiny`` profile before and after its speed options, side by side.

"before" = the profile with the speed options off (``train.amp_cpu=false``, ``loss.perceptual.bf16=false``: today's
float32 step before they existed); "after" = the profile as it is. Both sides are built from the same initial weights
in one process and trained ``--steps`` steps on the demo dataset's train split with the same batches and the same
per-step seeds (the trainer's), alternating one step of each, so machine load hits both alike; ``train.steps`` is
set to ``--steps`` so stage schedules (ToonTalker's two stages) run within the window. s/step is the median over the
steps after ``--warmup`` (oneDNN builds its kernels in the first steps); the ratio is before / after.

Loss: ``train_loss_last`` is the mean training loss of each side over its last quarter of steps (each side in its own
precision, on the same batches); ``eval_loss_fp32`` scores each trained model on ``--eval-batches`` unseen batches
in float32 on both sides (a training step of a throw-away copy, whose loss is computed before its update), so the two
numbers compare like with like.

Both sides share the code's one batched VGG pass per step (AnimeCeleb: warped + edited image against one target,
whose features are computed once; ToonTalker: both domains), so ``vgg_pass`` times that part alone: the loss's
forward + backward as separate calls per output (the code before) and as one pass, alternately, in float32 and in
the profile's precision.

    nice -n 10 python -m benchmarks.train_speed [--methods toontalker,fomm,animeceleb] [--steps 32] [--threads 1]
        [--set train.amp_cpu=true ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

from .common import load_avg, machine

RESULTS = Path(__file__).parent / "results" / "train_speed.json"
# how each method's step feeds its reconstruction loss: two outputs against one target, or one target each
PASS_LAYOUT = {"animeceleb": "shared", "toontalker": "own"}
OFF = ("train.amp_cpu=false", "loss.perceptual.bf16=false")


def _reconstruction_losses(model: Any) -> list[Any]:
    """The method's reconstruction losses (held in lists, outside the module tree)."""
    from toontalker_bench.models.losses import ReconstructionLoss

    return [v[0] for v in vars(model).values() if isinstance(v, list) and v and isinstance(v[0], ReconstructionLoss)]


def _step(model: Any, batch: dict, step: int, seed: int, bf16: bool) -> float:
    import torch

    from toontalker_bench.train.trainer import _step_seed

    torch.manual_seed(_step_seed(seed, step, 0, 0))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return float(model.training_step(batch, step)["loss"])


def _eval_fp32(model: Any, data: Any, first: int, n: int, batch_size: int, seed: int) -> float:
    """Mean float32 loss of ``model`` on ``n`` batches from step ``first`` on, each on a throw-away copy."""
    losses = []
    for step in range(first, first + n):
        m = copy.deepcopy(model)
        for rec in _reconstruction_losses(m):
            rec.bf16 = False
        losses.append(_step(m, data.batch(step, batch_size), step, seed, bf16=False))
    return statistics.fmean(losses)


def _vgg_pass(rec: Any, layout: str, batch: int, size: int, repeats: int = 7) -> dict[str, Any]:
    """Median seconds of the loss's forward + backward for two outputs: separate calls vs one :meth:`losses` pass."""
    import torch

    g = torch.Generator().manual_seed(0)
    a, b, ta, tb = (torch.rand(batch, 3, size, size, generator=g) for _ in range(4))
    targets = ta if layout == "shared" else [ta, tb]
    times: dict[str, list[float]] = {"separate": [], "one_pass": []}
    for _ in range(repeats):
        for how in times:
            x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
            t = time.perf_counter()
            if how == "separate":
                losses = [rec(x, ta), rec(y, ta if layout == "shared" else tb)]
            else:
                losses = rec.losses([x, y], targets)
            sum(losses).backward()
            times[how].append(time.perf_counter() - t)
    sep, one = (statistics.median(times[h][1:]) for h in times)
    return {"layout": layout, "separate_s": round(sep, 4), "one_pass_s": round(one, 4), "ratio": round(sep / one, 3)}


def measure(method: str, dataset: str, steps: int, warmup: int, eval_batches: int, seed: int,
            after_sets: tuple[str, ...] = ()) -> dict[str, Any]:
    import numpy as np
    import torch

    from toontalker_bench.models.registry import build_method, train_config
    from toontalker_bench.train.data import TrainData

    window = (f"train.steps={steps}",)
    before = build_method(method, "tiny", [*OFF, *window])
    after = build_method(method, "tiny", [*window, *after_sets])
    after.load_state_dict(before.state_dict())
    note = None
    try:
        import dlib  # noqa: F401
    except ImportError:  # AnimeCeleb's pose-map fit needs dlib: time the networks alone and say so
        for m in (before, after):
            if hasattr(m, "_estimator"):
                from toontalker_bench.faces.pose_map import N_FEATURES

                m._estimator = lambda frames: np.zeros((len(frames), N_FEATURES), np.float32)
                note = "3DMM pose-feature fit replaced by zeros (dlib not installed)"
    tc = {side: train_config(m.cfg) for side, m in (("before", before), ("after", after))}
    data = TrainData.from_dataset(dataset, after.size, seed, tc["after"].max_frames_per_clip, after.training_needs())
    sides = {"before": before, "after": after}
    times: dict[str, list[float]] = {s: [] for s in sides}
    losses: dict[str, list[float]] = {s: [] for s in sides}
    for step in range(steps):
        batch = data.batch(step, tc["after"].batch_size)
        for side, model in sides.items():
            t = time.perf_counter()
            losses[side].append(_step(model, batch, step, seed, tc[side].amp_cpu))
            times[side].append(time.perf_counter() - t)
    tail = max(1, steps // 4)
    out: dict[str, Any] = {"method": method, "profile": "tiny", "steps": steps, "warmup": warmup,
                           "batch_size": tc["after"].batch_size, "note": note, "after_sets": list(after_sets),
                           "options_after": {"train.amp_cpu": tc["after"].amp_cpu,
                                             "loss.perceptual.bf16": any(r.bf16 for r in _reconstruction_losses(after)),
                                             "reconstruction_backend": after.cfg.get("reconstruction_backend")},
                           "stages": after.stage_steps(steps) or None}
    for side, model in sides.items():
        out[side] = {"s_per_step": round(statistics.median(times[side][warmup:]), 4),
                     "s_per_step_all": [round(t, 3) for t in times[side]],
                     "train_loss_last": round(statistics.fmean(losses[side][-tail:]), 4),
                     "eval_loss_fp32": round(_eval_fp32(model, data, steps, eval_batches, tc[side].batch_size, seed), 4),
                     "variant": model.variant()}
    if method in PASS_LAYOUT:
        rec = copy.deepcopy(_reconstruction_losses(after)[0])
        out["vgg_pass"] = {}
        for name, bf16 in (("fp32", False), ("profile", rec.bf16)):
            rec.bf16 = bf16
            out["vgg_pass"][name] = _vgg_pass(rec, PASS_LAYOUT[method], tc["after"].batch_size, after.size)
    out["ratio"] = round(out["before"]["s_per_step"] / out["after"]["s_per_step"], 3)
    out["ratio_total"] = round(sum(times["before"][warmup:]) / sum(times["after"][warmup:]), 3)
    out["eval_loss_after_over_before"] = round(out["after"]["eval_loss_fp32"] / out["before"]["eval_loss_fp32"], 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="toontalker,fomm,animeceleb")
    ap.add_argument("--dataset", default="data/dataset")
    ap.add_argument("--steps", type=int, default=32, help="training steps per side")
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of s/step")
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override on the after side only (try an option before making it a profile default)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import torch

    from toontalker_bench.core.io import write_json

    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    kept = json.loads(args.out.read_text())["results"] if args.out.is_file() else []  # other methods' records stay
    report: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "machine": machine(), "threads": args.threads,
                              "results": [r for r in kept if r["method"] not in methods]}
    for method in methods:
        rec = measure(method, args.dataset, args.steps, args.warmup, args.eval_batches, args.seed, tuple(args.sets))
        rec["machine"] = machine()
        report["results"].append(rec)
        print(f"{method}: {rec['before']['s_per_step']} -> {rec['after']['s_per_step']} s/step ({rec['ratio']}x); "
              f"fp32 loss {rec['before']['eval_loss_fp32']} -> {rec['after']['eval_loss_fp32']}", flush=True)
    report["load_avg_end"] = load_avg()
    report["results"].sort(key=lambda r: r["method"])
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
