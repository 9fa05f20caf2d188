"""The version of a built dataset (or of any DVC stage output folder): its DVC md5 from the project's ``dvc.lock``,
else a content hash of its tables. Leaderboard rows, the corpus check and the dataset card name data by it."""

from __future__ import annotations

import hashlib
import json
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


def train_data_version(dataset_dir: str | Path) -> str:
    """A content hash of what training reads from a built dataset: the train split's rows of ``clips.parquet`` and
    each train clip's video and annotations. The protocol, the test clips and the card do not enter it, so a
    checkpoint trained on one dataset version can be scored on another that differs only there
    (``leaderboard rescore``)."""
    import pandas as pd

    root = Path(dataset_dir)
    table = pd.read_parquet(root / "clips.parquet")
    train = table[table["split"] == "train"].sort_values("clip_id").reset_index(drop=True)
    h = hashlib.sha256(train.to_json(orient="records", date_format="iso").encode())
    for rel in train["path"]:
        for p in (root / str(rel), (root / str(rel)).with_suffix(".npz")):
            h.update(p.name.encode())
            h.update(p.read_bytes() if p.is_file() else b"-")
    return f"sha256:{h.hexdigest()[:16]}"
