"""Per-file sha256 of the dataset pipeline's outputs, in ``sha256sum`` format: written once for the committed demo
dataset (``docs/demo-dataset.sha256``), checked after a rebuild on another machine, so a difference names its file
instead of only changing a DVC directory hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..core.config import Params
from ..core.errors import UserError
from ..core.io import write_text
from .stages import STAGES


def output_dirs(params: Params) -> list[Path]:
    """Every stage's output folder, in pipeline order."""
    return [Path(getattr(params, st.name).out_dir) for st in STAGES]


def checksums(params: Params) -> dict[str, str]:
    """``path -> sha256`` of every file in the stages' output folders, without resume records or temporary files."""
    out = {}
    for root in output_dirs(params):
        if not root.is_dir():
            raise UserError(f"{root} is missing", hint="build the dataset first: dvc repro (or make demo)")
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root).parts
            if f.is_file() and not any(p.startswith(".") for p in rel):
                out[f.as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def write_checksums(params: Params, path: str | Path) -> int:
    sums = checksums(params)
    write_text(path, "".join(f"{h}  {p}\n" for p, h in sums.items()))
    return len(sums)


def compare_checksums(params: Params, path: str | Path) -> dict[str, list[str]]:
    """The files that ``differ`` from ``path``'s list, are ``missing`` here, or are ``extra`` here."""
    if not Path(path).is_file():
        raise UserError(f"checksum list {path} not found", hint="write one with: toontalker-bench data checksums --write")
    want = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            want[name.strip()] = digest
    have = checksums(params)
    return {"differ": sorted(p for p in want.keys() & have.keys() if want[p] != have[p]),
            "missing": sorted(want.keys() - have.keys()), "extra": sorted(have.keys() - want.keys())}
