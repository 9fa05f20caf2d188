"""What lets anyone re-check a published row (``leaderboard verify``, :mod:`.verify`), kept beside the CSV:

- ``pairs/<method>-<run_id>.parquet``: the run's per-pair metric values (``task, pair_id, metric, value, backend``;
  float32, finite values only), so a re-computation on a few pairs has the published numbers of those same pairs;
- ``checkpoints/<method>-<run_id>.safetensors``: the run's final weights (no optimiser state) in half precision
  (float tensors as float16, integer tensors as they are) unless they take at most :data:`FULL_PRECISION_BYTES`,
  within :data:`CHECKPOINT_BUDGET_BYTES` for all distinct checkpoint contents together; a ``.json`` sidecar records its sha256,
  whether it holds the run's weights exactly (float16 moves the face-analysis metrics of a blurry output by a few
  percent, so a small checkpoint is worth its exact re-check) and, where known, the version of the data it was
  trained on (``train_data``, :func:`~toontalker_bench.data.version.train_data_version`: what lets
  ``leaderboard rescore`` score it on a later dataset version without training again);
- ``checkpoints/<method>-<run_id>.yaml``: the run's ``config.yaml`` (method config and the evaluation settings), so
  the run directory is not needed.

The row's ``checkpoint`` column names the committed checkpoint (relative to the leaderboard folder), empty when it
was over the budget: such a checkpoint has to be hosted elsewhere (a Hugging Face model repository, fetched with
``huggingface_hub.hf_hub_download``) and passed to ``leaderboard verify --checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from ..core.errors import LeaderboardError
from ..core.io import atomic_path, sha256_file, write_bytes, write_json, write_table
from .store import csv_path, lock, publish_rows, read_rows

log = logging.getLogger(__name__)

PAIRS_DIR, CHECKPOINTS_DIR = "pairs", "checkpoints"
#: all committed checkpoints together (git holds every version of them: keep the repository small). Sized for the
#: board's `tiny` rows, three seeds of each learned method: 3 x (ToonTalker 6.5 + AnimeCeleb 6.7 + FOMM 2.9 MB) and
#: the brackets' few hundred KB
CHECKPOINT_BUDGET_BYTES = 50_000_000
#: weights this small are kept as trained (the brackets' are at most a few hundred KB, FOMM `tiny`'s 2.9 MB: in float16
#: its outputs moved `apd_rel_deg` by up to 0.36 degrees on a re-checked pair, beyond the float16 tolerance)
FULL_PRECISION_BYTES = 4_000_000
RUN_CHECKPOINT, RUN_CONFIG = "checkpoint.safetensors", "config.yaml"  # in a run directory (:mod:`..runs`)
FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def stem(method: str, run_id: str) -> str:
    return f"{method}-{run_id}"


def pairs_path(leaderboard_dir: str | Path, method: str, run_id: str) -> Path:
    return Path(leaderboard_dir) / PAIRS_DIR / f"{stem(method, run_id)}.parquet"


def checkpoint_path(leaderboard_dir: str | Path, method: str, run_id: str, suffix: str = ".safetensors") -> Path:
    """The committed checkpoint (``suffix`` ``.yaml``: the run's config, ``.json``: the checkpoint's record)."""
    return Path(leaderboard_dir) / CHECKPOINTS_DIR / f"{stem(method, run_id)}{suffix}"


# ------------------------------------------------------------------------------------------------ per-pair values
def per_pair_table(run_dir: str | Path) -> pd.DataFrame:
    """The run's per-pair values in long form (``pairs.csv`` values, ``metrics_detail.json`` backends); pooled
    metrics (FID, KID) have no per-pair value and are left out, as are values that were not computed."""
    run_dir = Path(run_dir)
    detail = json.loads((run_dir / "metrics_detail.json").read_text())
    wide = pd.read_csv(run_dir / "pairs.csv", dtype={"task": str, "pair_id": str})
    parts = []
    for task, metrics in detail["tasks"].items():
        rows = wide[wide["task"] == task]
        for metric, value in metrics.items():
            if metric not in rows.columns:
                continue
            vals = pd.to_numeric(rows[metric], errors="coerce")
            keep = vals.notna()
            parts.append(pd.DataFrame({"task": task, "pair_id": rows.loc[keep, "pair_id"], "metric": metric,
                                       "value": vals[keep].astype("float32"), "backend": value.get("backend", "")}))
    columns = {"task": str, "pair_id": str, "metric": str, "value": "float32", "backend": str}
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
    return table.astype(columns).sort_values(["task", "metric", "pair_id"], ignore_index=True)


# ------------------------------------------------------------------------------------------------ checkpoints
def half_precision(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool, list[str]]:
    """Float tensors as float16 (those with values beyond float16's range stay float32), others unchanged; returns
    the tensors, whether every value survived exactly, and the names kept in float32."""
    out, lossless, kept = {}, True, []
    for name, t in tensors.items():
        if not t.is_floating_point() or t.dtype == torch.float16:
            out[name] = t
            continue
        if t.numel() and t.abs().max().item() > FLOAT16_MAX:
            kept.append(name)
            half = t.float()
        else:
            half = t.half()
        lossless = lossless and torch.equal(half.to(t.dtype), t)
        out[name] = half.contiguous()
    return out, lossless, kept


def _weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A run checkpoint's weights (``model.*``; the optimiser's tensors are never read) and its metadata without the
    optimiser's structure, read with safetensors alone (publishing needs no model code)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = {k: v for k, v in (f.metadata() or {}).items() if k != "optim_tree"}
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}, meta
    except (SafetensorError, OSError) as e:
        raise LeaderboardError(f"cannot read {path}: {e}", hint="the run's checkpoint is not a complete "
                                                                 "safetensors file; re-run the run") from None


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its header's keys in sorted order. The library writes a file's metadata in hash
    order, so saving the same weights twice can give different bytes: a committed checkpoint, and a rescored run's
    copy of it, should be one file to git and to a reader's sha256."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}) | dict(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data that follows starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def _committed_bytes(folder: Path, leave_out: str, data: bytes) -> int:
    """What the committed checkpoints take with ``data`` in place of ``leave_out``'s: each distinct content once, as
    git stores it (a rescored run's checkpoint is its original's bytes under a new name)."""
    sizes = {hashlib.sha256(data).hexdigest(): len(data)}
    for p in folder.glob("*.safetensors"):
        if p.stem != leave_out:
            sizes.setdefault(sha256_file(p), p.stat().st_size)
    return sum(sizes.values())


def write_checkpoint(run_dir: str | Path, leaderboard_dir: str | Path, method: str, run_id: str,
                     train_data: str = "") -> str:
    """Commit the run's final checkpoint in half precision, if it fits the budget; returns its path relative to the
    leaderboard folder, or ``""`` (with a warning saying what to do) when it is absent or too large."""
    from safetensors.torch import save

    src = Path(run_dir) / RUN_CHECKPOINT
    if not src.is_file():
        log.warning("%s has no %s: its rows cannot be re-checked", run_dir, RUN_CHECKPOINT)
        return ""
    weights, meta = _weights(src)
    data, dtype, lossless, kept = canonical_safetensors(save(weights, metadata=meta)), "as trained", True, []
    if len(data) > FULL_PRECISION_BYTES:
        weights, lossless, kept = half_precision(weights)
        data, dtype = canonical_safetensors(save(weights, metadata=meta)), "float16"
    dst = checkpoint_path(leaderboard_dir, method, run_id)
    total = _committed_bytes(dst.parent, dst.stem, data) if dst.parent.is_dir() else len(data)
    if total > CHECKPOINT_BUDGET_BYTES:
        log.warning("%s: its checkpoint (%.3g MB) would take the committed checkpoints to %.3g MB, "
                    "over the %g MB budget; not committed. Host it elsewhere (e.g. a Hugging Face model repository) "
                    "and re-check its rows with `leaderboard verify %s --checkpoint PATH`", run_dir, len(data) / 1e6,
                    total / 1e6, CHECKPOINT_BUDGET_BYTES / 1e6, run_id)
        dst.unlink(missing_ok=True)
        checkpoint_path(leaderboard_dir, method, run_id, ".json").unlink(missing_ok=True)
        return ""
    write_bytes(dst, data)
    write_json(checkpoint_path(leaderboard_dir, method, run_id, ".json"), {
        "sha256": sha256_file(dst), "bytes": len(data), "source_sha256": sha256_file(src),
        "dtype": dtype, "lossless": lossless, "float32": kept, **({"train_data": train_data} if train_data else {})})
    return dst.relative_to(leaderboard_dir).as_posix()


def run_train_data(run_dir: str | Path, dataset_version: str) -> str:
    """The train-data version of a finished run's checkpoint: carried in its ``train.json`` (a re-scored run), or
    read from the dataset it trained on when that run trained and evaluated on it in one go and the dataset is still
    at the version its rows name; ``""`` when neither holds (nothing is guessed)."""
    from ..data.version import dataset_version as version_of
    from ..data.version import train_data_version

    run_dir = Path(run_dir)
    train = _read(run_dir / "train.json")
    if train.get("train_data"):
        return str(train["train_data"])
    dataset = Path(str(_read_yaml(run_dir / RUN_CONFIG).get("params", {}).get("dataset", "")))
    if (int(train.get("steps", 0)) > 0 and not train.get("checkpoint_from") and (dataset / "clips.parquet").is_file()
            and version_of(dataset) == dataset_version):
        return train_data_version(dataset)
    return ""


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def checkpoint_record(leaderboard_dir: str | Path, method: str, run_id: str) -> dict[str, Any]:
    """The sidecar of a committed checkpoint (sha256, lossless...)."""
    path = checkpoint_path(leaderboard_dir, method, run_id, ".json")
    if not path.is_file():
        raise LeaderboardError(f"{path} not found", hint="restore it from git, or re-run `leaderboard backfill`")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------ publish, prune
def publish_artifacts(run_dir: str | Path, leaderboard_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write the run's per-pair values, config and checkpoint beside the CSV and name the checkpoint in ``rows``
    (their ``checkpoint`` column, which :func:`~.store.run_rows` fills with the run directory's own path)."""
    run_dir = Path(run_dir)
    method, run_id = str(rows[0]["method"]), str(rows[0]["run_id"])
    if (run_dir / "pairs.csv").is_file():
        write_table(pairs_path(leaderboard_dir, method, run_id), per_pair_table(run_dir))
    else:
        log.warning("%s has no pairs.csv: its rows cannot be re-checked pair by pair", run_dir)
    if (run_dir / RUN_CONFIG).is_file():
        with atomic_path(checkpoint_path(leaderboard_dir, method, run_id, ".yaml")) as tmp:
            shutil.copyfile(run_dir / RUN_CONFIG, tmp)
    rel = write_checkpoint(run_dir, leaderboard_dir, method, run_id,
                           run_train_data(run_dir, str(rows[0].get("dataset_version", ""))))
    for r in rows:
        r["checkpoint"] = rel


def backfill(run_dir: str | Path, leaderboard_dir: str | Path, benchmark: str) -> list[dict[str, str]]:
    """:func:`publish_artifacts` for a run already on the board (published before the artifacts were kept): its
    rows keep every value and gain their ``checkpoint`` column; returns those rows."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise LeaderboardError(f"{info_path} not found", hint="pass a finished run directory (runs/<method>/<id>)")
    run_id = str(json.loads(info_path.read_text())["run_id"])
    path = csv_path(leaderboard_dir, benchmark)
    with lock(path):
        rows = [r for r in read_rows(path)[0] if r["run_id"] == run_id]
    if not rows:
        raise LeaderboardError(f"run {run_id} has no rows in {path}", hint="publish it: `leaderboard publish --run`")
    publish_artifacts(run_dir, leaderboard_dir, rows)
    publish_rows(path, rows)
    return rows


def prune_artifacts(leaderboard_dir: str | Path) -> int:
    """Delete the per-pair tables, configs and checkpoints of runs that no row of any CSV in the folder names any
    more (after ``leaderboard prune``); returns the files deleted."""
    folder = Path(leaderboard_dir)
    named = set()
    for path in folder.glob("*.csv"):
        with lock(path):
            named |= {stem(r["method"], r["run_id"]) for r in read_rows(path)[0]}
    stale = [p for d in (PAIRS_DIR, CHECKPOINTS_DIR) for p in sorted((folder / d).glob("*"))
             if p.is_file() and _run_stem(p.name) not in named]
    for p in stale:
        p.unlink()
    return len(stale)


def _run_stem(name: str) -> str:
    """``<method>-<run_id>`` of an artifact's file name (run ids may hold dots)."""
    for suffix in (".parquet", ".safetensors", ".yaml", ".json"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
