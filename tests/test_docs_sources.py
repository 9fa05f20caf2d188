"""Every measured figure a table in the README or docs/ shows comes from a committed file the table names.

A table of measurements is preceded by ``<!-- figures: PATH[, PATH] -->`` (only blank lines between), PATH a
committed JSON or CSV file relative to the repository root, for JSON optionally narrowed to one part of it
(``docs/metrics-validation.json#identity/sface``: keys joined by ``/``); a table of settings, not measurements, by
``<!-- figures: none (why) -->``. Every decimal number a marked table shows (outside code spans) must be some number
of the cited files rounded to the decimals shown (a percentage: some number × 100). A table that shows decimal
numbers and carries no marker fails.
"""

from __future__ import annotations

import bisect
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*figures:\s*(.*?)\s*-->\s*$")
CODE = re.compile(r"`[^`]*`")
# A decimal as shown (3.64, -0.02, 1.8e-5, 2e-7, 99.4%, 1.29x), not part of a name, version or date (v0.1, 2.14.1,
# Apache-2.0, 640x360).
NUMBER = re.compile(r"(?<![\w.])(?<!\w[-−])([-−]?)(\d+(?:\.(\d+))?)(?:e([-−+]?\d+))?(%?)(?!\.\d|[^\Wx]|x\w)")


def _tables(path: Path) -> Iterator[tuple[int, str | None, list[str]]]:
    """(line number, marker text or None, body rows) of each Markdown table in ``path``."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        is_table = (lines[i].lstrip().startswith("|") and i + 1 < len(lines)
                    and re.match(r"^\s*\|[\s:|-]*-[\s:|-]*$", lines[i + 1]))
        if not is_table:
            i += 1
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = MARKER.match(lines[j]) if j >= 0 else None
        k = i + 2
        while k < len(lines) and lines[k].lstrip().startswith("|"):
            k += 1
        yield i + 1, marker.group(1) if marker else None, lines[i + 2:k]
        i = k


def _decimals(rows: list[str]) -> list[tuple[str, float, float, bool]]:
    """(as shown, value, half a unit of the last shown digit, is a percentage) of every decimal in the rows."""
    out = []
    for row in rows:
        for m in NUMBER.finditer(CODE.sub(" ", row)):
            sign, digits, frac, exp, pct = m.groups()
            if frac is None and exp is None:
                continue  # an integer: counts, sizes and settings
            shown = m.group(0).replace("−", "-")
            scale = 10.0 ** int(exp.replace("−", "-")) if exp else 1.0
            value = float(("-" if sign else "") + digits) * scale
            out.append((shown, value, 0.5 * 10.0 ** -len(frac or "") * scale, bool(pct)))
    return out


def _numbers(source: str) -> list[float]:
    """Every number in a JSON file or part of it (recursively) or a CSV file (every numeric cell), sorted."""
    name, _, part = source.partition("#")
    path = ROOT / name
    assert path.is_file(), f"{name} is not in the repository"
    found: list[float] = []

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            found.append(float(x))

    if path.suffix == ".json":
        data = json.loads(path.read_text())
        for key in filter(None, part.split("/")):
            assert isinstance(data, dict) and key in data, f"{source}: no {key!r} there"
            data = data[key]
        walk(data)
    elif path.suffix == ".csv" and not part:
        with path.open(newline="") as f:
            for row in csv.reader(f):
                for cell in row:
                    try:
                        found.append(float(cell))
                    except ValueError:
                        pass
    else:
        raise AssertionError(f"{source}: a figures source is a JSON file (or part of one) or a CSV file")
    return sorted(found)


def _held(numbers: list[float], value: float, tol: float) -> bool:
    k = bisect.bisect_left(numbers, value - tol * (1 + 1e-9))
    return k < len(numbers) and numbers[k] <= value + tol * (1 + 1e-9)


def _cases() -> list[tuple[str, int, str | None, list[str]]]:
    return [(p.relative_to(ROOT).as_posix(), line, marker, rows)
            for p in DOCS for line, marker, rows in _tables(p)]


CASES = _cases()


def test_the_docs_have_marked_tables() -> None:
    marked = [c for c in CASES if c[2] and not c[2].startswith("none")]
    assert len(marked) >= 20


@pytest.mark.parametrize("doc,line,marker,rows", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_every_figure_of_a_table_is_in_the_file_it_cites(doc: str, line: int, marker: str | None,
                                                         rows: list[str]) -> None:
    shown = _decimals(rows)
    if marker is None:
        assert not shown, (f"{doc}:{line}: a table of decimal figures ({shown[0][0]}, ...) names no source: "
                           "put <!-- figures: PATH --> (or <!-- figures: none (settings) --> for settings) above it")
        return
    if marker.startswith("none"):
        assert re.fullmatch(r"none \(.+\)", marker), f"{doc}:{line}: say why: <!-- figures: none (settings) -->"
        return
    numbers = sorted(x for source in marker.split(",") for x in _numbers(source.strip()))
    percent = [100 * x for x in numbers]
    missing = [s for s, value, tol, pct in shown
               if not _held(numbers, value, tol) and not (pct and _held(percent, value, tol))]
    assert not missing, f"{doc}:{line}: figures not in {marker}: {missing}"


def test_the_readme_performance_table_is_what_benchmarks_run_prints() -> None:
    from benchmarks.run import MERGED, table

    assert table(json.loads((ROOT / MERGED).read_text())) in (ROOT / "README.md").read_text()
