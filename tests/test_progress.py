"""Long work talks in a log too: without a terminal, progress() logs a plain line at a steady interval."""

from __future__ import annotations

import logging

import pytest

from toontalker_bench.core import progress as P


def test_a_log_gets_progress_lines_not_a_redrawn_bar(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(P, "quiet", lambda: True)
    monkeypatch.setattr(P, "LINE_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger=P.log.name):
        for _ in P.progress(range(3), desc="evaluating self_real", unit="pair"):
            pass
        with P.progress(total=None, desc="reading", unit="frame") as bar:
            bar.update(5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("evaluating self_real: 1/3 pairs (33%)") and "ETA" in lines[0]
    assert any(m.startswith("evaluating self_real: 3/3 pairs (100%)") for m in lines), lines
    assert lines[-1].startswith("reading: 5 frames")
    assert capsys.readouterr().err == ""  # nothing drawn with carriage returns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=P.log.name):
        list(P.progress(range(3), disable=True))
    assert not caplog.records
