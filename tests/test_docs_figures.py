"""The README's board table quotes the committed leaderboard CSV: every figure it shows is the newest run's value there."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("self_real", "self_cartoon", "real2cartoon", "cartoon2real")
METRICS = ("apd_rel_deg", "aed_exp_rel", "csim")


def _board_table(readme: str) -> list[list[str]]:
    start = readme.index("| bracket | self_real `apd_rel_deg` / `aed_exp_rel` / CSIM |")
    rows = []
    for line in readme[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_readme_board_table_matches_the_committed_csv() -> None:
    readme = (ROOT / "README.md").read_text()
    version = re.search(r"\*\*Dataset version `(dvc:[0-9a-f]+)`\*\*", readme).group(1)
    board = pd.read_csv(ROOT / "leaderboard" / "demo.csv")
    board = board[(board.dataset_version == version) & (board.profile == "tiny")
                  & board.protocol_subset.isna()].sort_values(["date", "run_id"])
    rows = _board_table(readme)
    assert len(rows) >= 4
    checked = 0
    for name, *cells in rows:
        method = name.strip("*")
        mine = board[board.method == method]
        assert not mine.empty, method
        newest = mine[mine.run_id == mine.run_id.iloc[-1]].set_index("task")
        for task, cell in zip(TASKS, cells):
            if cell == "–":
                assert task not in newest.index
                continue
            for metric, shown in zip(METRICS, cell.split(" / ")):
                shown = shown.rstrip("†")
                decimals = len(shown.split(".")[1]) if "." in shown else 0
                assert round(float(newest.loc[task, metric]), decimals) == float(shown), (method, task, metric)
                checked += 1
    assert checked >= 40
