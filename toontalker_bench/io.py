"""Atomic file writes and table I/O shared by every stage.

Every output is written to a temporary sibling and moved into place with ``os.replace``, so a killed process never
leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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
