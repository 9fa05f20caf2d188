"""What training reports: ``train_log.csv`` (truncated to the resume step), TensorBoard scalars and sample grids,
sample grid PNGs, and, when no progress bar is shown (a log file, CI), a progress line at a steady interval."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..core.progress import quiet
from ..models.base import Method, to_uint8
from .data import TrainData

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0  # seconds between progress lines when the bar is hidden


class TrainLogs:
    """``train_log.csv`` (truncated to the resume step), TensorBoard scalars and images, progress lines."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool, name: str = "train", total: int = 0,
                 every_s: float = PROGRESS_EVERY_S) -> None:
        self.name, self.total, self.every_s = name, total, every_s
        self.start_step, self.t0 = start_step, time.perf_counter()
        self.last_line = self.t0 if quiet() else float("inf")  # lines only where the bar is hidden
        self.path = run_dir / "train_log.csv"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
            if rows:
                self.fields = list(rows[0])
            self._rewrite(rows)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        from ..core.io import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            if self.fields:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(rows)

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}}
        new = self.fields is None
        if new:
            self.fields = list(row)
        elif any(k not in self.fields for k in row):
            # a later training stage logs new terms: widen the header instead of dropping them
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.fields += [k for k in row if k not in self.fields]
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.fields, restval="")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def progress(self, step: int, losses: dict[str, float], final: bool = False) -> None:
        """Log ``step/total, losses, steps/s, ETA`` when ``every_s`` seconds passed since the last line (or at the
        end of training) — only when no progress bar is shown, so a log file still says training is alive."""
        now = time.perf_counter()
        if now - self.last_line < self.every_s and not (final and self.last_line != float("inf")):
            return
        self.last_line = now
        rate = (step - self.start_step) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        terms = ", ".join(f"{k} {v:.4g}" for k, v in losses.items() if k != "loss")
        loss = losses.get("loss", float("nan"))
        log.info("%s: step %d/%d (%.0f%%), loss %.4g%s, %.2f steps/s, ETA %s", self.name, step, self.total,
                 100 * step / max(self.total, 1), loss, f" ({terms})" if terms else "", rate, _duration(eta))

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """A uint8 ``(H, W, 3)`` picture into TensorBoard (when it is on)."""
        if self.tb is not None:
            self.tb.add_image(tag, picture, step, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def sample_grid(method: Method, data: TrainData, device: torch.device) -> np.ndarray:
    """One picture of the method animating the preview clips: per (source, driving) domain pair a row of the source
    and driving frames, and below it the outputs."""
    from ..core.visual import grid

    preview = data.preview()
    rows = []
    was_training = method.training
    method.eval()
    with torch.no_grad():
        for src_dom, (src, _) in preview.items():
            for drv_dom, (_, drv) in preview.items():
                if src_dom != drv_dom and not method.capabilities.cross_domain:
                    continue
                out = method.animate(src.to(device), drv.to(device), source_domain=src_dom,  # type: ignore[arg-type]
                                     driving_domain=drv_dom)  # type: ignore[arg-type]
                rows.append([to_uint8(src), *to_uint8(drv)])
                rows.append([np.full_like(to_uint8(src), 255), *to_uint8(out)])
    method.train(was_training)
    return grid(rows)
