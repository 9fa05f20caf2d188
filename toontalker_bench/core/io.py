"""Atomic file writes and table I/O shared by every stage.

Every output is written to a temporary sibling and moved into place with ``os.replace``, so a killed process never
leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``, on failure delete it.

    The temporary name keeps the final suffix (``suffix`` overrides it) so writers that sniff the extension
    (PyAV, PIL, pandas) pick the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    final_suffix = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=final_suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh directory beside ``path`` (mode 0777 & ~umask, like ``mkdir``); on success swap it in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clear_partial_files(folder: str | os.PathLike[str]) -> None:
    """Delete the temporaries a killed run left under ``folder`` (:func:`atomic_path` and :func:`atomic_dir` name
    them ``.<name>.tmp-*``), so a resumed run ends with exactly the files of an uninterrupted one. A missing
    ``folder`` has nothing to clear."""
    for f in sorted(Path(folder).rglob(".*.tmp-*"), key=lambda f: len(f.parts)):
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
        else:  # or already gone with its folder
            f.unlink(missing_ok=True)


def write_run_report(out_dir: str | os.PathLike[str], stage: str, facts: dict[str, Any]) -> Path:
    """Write a stage's run-specific facts (timings, work resumed) to ``<out_dir>/../reports/<stage>.json``.

    They sit beside the stage's DVC output, not inside it, so the output's bytes (and its hash in dvc.lock) depend
    on the data alone and rerunning a stage leaves the later ones up to date. dvc.yaml lists them as metrics.
    """
    path = Path(out_dir).parent / "reports" / f"{stage}.json"
    write_json(path, {"stage": stage, **facts})
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_table(path: str | os.PathLike[str], df: pd.DataFrame) -> None:
    """Write a parquet table deterministically (no pandas index, stable row order is the caller's job)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path: str | os.PathLike[str], what: str = "table") -> pd.DataFrame:
    from .errors import DatasetError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}", hint="run the stage that produces it (see `dvc repro`)")
    return pd.read_parquet(path)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_name(name: str) -> bool:
    """True if ``name`` is usable as a single file-name component (no separators, no dot-dot, no NUL)."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name)) and ".." not in name
