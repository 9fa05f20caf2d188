"""Publish a finished run: its rows into the leaderboard CSV, then the pages re-rendered."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..core.errors import LeaderboardError
from ..core.provenance import is_dirty
from .artifacts import publish_artifacts
from .render import render
from .store import csv_path, prune, publish_rows, read_rows, run_rows

log = logging.getLogger(__name__)


def publish_run(run_dir: str | Path, leaderboard_dir: str | Path, benchmark: str, render_pages: bool = True,
                allow_dirty: bool = False) -> Path:
    """Add a finished run's rows; a run made from uncommitted code is refused (nothing written) unless
    ``allow_dirty``, and then its rows carry the diff's hash in ``code_commit``."""
    if not allow_dirty:
        info = Path(run_dir) / "run.json"
        commit = str(json.loads(info.read_text()).get("code_commit", "")) if info.is_file() else ""
        if info.is_file() and is_dirty(commit):
            raise LeaderboardError(f"run {run_dir} was made from code no commit names (code_commit {commit!r})",
                                   hint="commit, re-run and publish; or pass --allow-dirty (the row keeps the diff's "
                                        "hash)")
    path = csv_path(leaderboard_dir, benchmark)
    read_rows(path)  # a corrupt board stops us before anything is written
    rows = run_rows(run_dir, leaderboard_dir)
    publish_artifacts(run_dir, leaderboard_dir, rows)  # what `leaderboard verify` re-checks the rows with
    n = publish_rows(path, rows)
    prune(leaderboard_dir, benchmark, None)  # the superseded runs' sample GIFs
    log.info("published %s to %s (%d rows)", run_dir, path, n)
    if render_pages:
        render(leaderboard_dir, benchmark)
    return path
