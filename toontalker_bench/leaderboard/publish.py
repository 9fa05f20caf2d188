"""Publish a finished run: its rows into the leaderboard CSV, then the pages re-rendered."""

from __future__ import annotations

import logging
from pathlib import Path

from .render import render
from .store import csv_path, prune, publish_rows, run_rows

log = logging.getLogger(__name__)


def publish_run(run_dir: str | Path, leaderboard_dir: str | Path, benchmark: str, render_pages: bool = True) -> Path:
    path = csv_path(leaderboard_dir, benchmark)
    n = publish_rows(path, run_rows(run_dir, leaderboard_dir))
    prune(leaderboard_dir, benchmark, None)  # the superseded runs' sample GIFs
    log.info("published %s to %s (%d rows)", run_dir, path, n)
    if render_pages:
        render(leaderboard_dir, benchmark)
    return path
