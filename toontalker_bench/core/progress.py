"""Progress bars and logging set-up: tqdm bars on a terminal, a plain progress line every 30 s in a log."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("toontalker_bench.core.progress")
LINE_EVERY_S = 30.0


class _Discard:
    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _LineBar(tqdm):
    """A bar for logs: instead of redrawing in place it logs ``desc: n/total (pct), rate, ETA`` at most every
    ``LINE_EVERY_S`` seconds (tqdm's ``mininterval``), and nothing else."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.update(file=_Discard(), mininterval=LINE_EVERY_S, maxinterval=LINE_EVERY_S, leave=False, disable=False,
                  bar_format="{desc}: {n_fmt}/{total_fmt} {unit}s ({percentage:.0f}%), {rate_fmt}, ETA {remaining}")
        super().__init__(*args, **kw)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:  # noqa: ARG002 - tqdm's signature
        if msg == "" or not self.n:  # tqdm clears the bar on close; nothing done yet says nothing
            return True
        if self.total:
            log.info(" ".join(self.format_meter(**self.format_dict).split()))  # tqdm pads the rate
        else:
            log.info("%s: %d %ss, %.1f/s", self.desc, self.n, self.unit, self.format_dict.get("rate") or 0.0)
        return True


def quiet() -> bool:
    """True when progress bars are hidden (stderr is not a terminal, unless TOONTALKER_PROGRESS=1)."""
    if os.environ.get("TOONTALKER_PROGRESS") == "1":
        return False
    return not sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **kw: Any) -> tqdm:
    """A tqdm bar on a terminal (TOONTALKER_PROGRESS=1 forces it); without one, a progress line in the log every
    ``LINE_EVERY_S`` seconds (``disable=True`` silences both)."""
    if quiet() and not kw.get("disable"):
        kw.pop("dynamic_ncols", None)
        return _LineBar(iterable, **kw)
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("leave", False)
    return tqdm(iterable, **kw)


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
