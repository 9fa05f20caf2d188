"""Progress bars and logging set-up: tqdm bars that stay quiet when stderr is not a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    """True when progress bars are hidden (stderr is not a terminal, unless TOONTALKER_PROGRESS=1)."""
    if os.environ.get("TOONTALKER_PROGRESS") == "1":
        return False
    return not sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **kw: Any) -> tqdm:
    """A tqdm bar, disabled when not on a TTY (set TOONTALKER_PROGRESS=1 to force it on)."""
    kw.setdefault("disable", quiet())
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("leave", False)
    return tqdm(iterable, **kw)


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
