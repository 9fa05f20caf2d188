"""Which code produced a result (the checkout's commit, and whether it had uncommitted changes) and when: leaderboard
rows and the metric validation report record them (the data they read: :mod:`..data.version`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path


BOARD_DIR = "leaderboard"  # the committed board: publishing writes it, so its changes are results, not code


def code_commit() -> str:
    """The checkout's commit (12 hex); with uncommitted changes to tracked files ``<commit>+dirty-<diff hash>``, the
    first 12 hex of the sha256 of ``git diff HEAD``, so a row made from changed code still names what ran. The
    committed board's own files do not count: each published row changes them, and a run after another is still
    the same code."""
    here = Path(__file__).resolve().parent  # the checkout this code runs from, whatever the working directory
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True, cwd=here).stdout.strip()
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10,
                             check=True, cwd=here).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--binary", "--", ".", f":(exclude){BOARD_DIR}"],
                              capture_output=True, timeout=60, check=True, cwd=top).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (f"+dirty-{hashlib.sha256(diff).hexdigest()[:12]}" if diff else "")


def is_dirty(commit: str) -> bool:
    """Whether a recorded ``code_commit`` names uncommitted code (or none at all)."""
    return "+dirty" in commit or commit in ("", "unknown")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
