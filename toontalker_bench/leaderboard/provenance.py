"""Where a leaderboard row's numbers come from: the dataset version, the code commit, the time."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import yaml


def project_lock(dataset_dir: str | Path) -> Path | None:
    """The ``dvc.lock`` of the DVC project that holds ``dataset_dir`` (the nearest one above it), if any."""
    for folder in Path(dataset_dir).resolve().parents:
        if (folder / "dvc.lock").is_file():
            return folder / "dvc.lock"
    return None


def dataset_version(dataset_dir: str | Path, lock_file: str | Path | None = None) -> str:
    """The DVC md5 of the dataset directory from ``dvc.lock`` (by default the lock of the project that holds the
    dataset, so the same dataset gets the same version whatever the working directory or the path's spelling), else
    a content hash of its tables."""
    dataset_dir = Path(dataset_dir).resolve()
    lock = Path(lock_file) if lock_file is not None else project_lock(dataset_dir)
    if lock is not None and lock.is_file():
        try:
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        except yaml.YAMLError:
            stages = {}
        base = lock.resolve().parent
        found = sorted((str(out["path"]).rstrip("/"), str(out["md5"]))
                       for stage in stages.values() if isinstance(stage, dict)
                       for out in stage.get("outs", []) if out.get("md5")
                       and (base / str(out.get("path", ""))).resolve().is_relative_to(dataset_dir))
        if len(found) == 1 and (base / found[0][0]).resolve() == dataset_dir:
            return f"dvc:{found[0][1]}"
        if found:  # the dataset is several DVC outputs: hash their md5s
            return "dvc:" + hashlib.sha256(json.dumps(found).encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for rel in ("clips.parquet", "protocol/pairs.parquet"):
        p = dataset_dir / rel
        h.update(p.read_bytes() if p.is_file() else b"-")
    return f"sha256:{h.hexdigest()[:16]}"


def code_commit() -> str:
    """The checkout's commit (12 hex); with uncommitted changes to tracked files ``<commit>+dirty-<diff hash>``, the
    first 12 hex of the sha256 of ``git diff HEAD``, so a row made from changed code still names what ran."""
    here = Path(__file__).resolve().parent  # the checkout this code runs from, whatever the working directory
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True, cwd=here).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--binary"], capture_output=True, timeout=60, check=True,
                              cwd=here).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (f"+dirty-{hashlib.sha256(diff).hexdigest()[:12]}" if diff else "")


def is_dirty(commit: str) -> bool:
    """Whether a recorded ``code_commit`` names uncommitted code (or none at all)."""
    return "+dirty" in commit or commit in ("", "unknown")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
