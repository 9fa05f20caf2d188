"""The benchmark harness's own arithmetic: medians of repeats and reading ``make demo``'s wall time from a log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package

from benchmarks.common import summary  # noqa: E402
from benchmarks.demo import wall_from_log  # noqa: E402


def test_summary_is_the_median_of_repeats() -> None:
    s = summary([3.0, 1.0, 10.0, 2.0])
    assert (s["median"], s["n"], s["min"], s["max"]) == (2.5, 4, 1.0, 10.0)
    assert s["all"] == [3.0, 1.0, 10.0, 2.0]


@pytest.mark.parametrize(("log", "seconds"), [
    ("...\nreal\t12m45.300s\nuser\t20m1.0s\nsys\t0m3.1s\n", 765.3),
    ("\tElapsed (wall clock) time (h:mm:ss or m:ss): 12:45.30\n", 765.3),
    ("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n", 3723.0),
    ("real 1m0.5s\nlater run\nreal 2m0.0s\n", 120.0),  # the last report wins
])
def test_wall_from_log(log: str, seconds: float) -> None:
    assert wall_from_log(log) == pytest.approx(seconds)


def test_wall_from_log_without_a_report() -> None:
    assert wall_from_log("make: *** [demo] Error 2\n") is None
