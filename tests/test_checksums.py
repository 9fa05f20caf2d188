"""`data checksums`: a per-file sha256 list of the stages' outputs, and a check that names the file that differs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from toontalker_bench.cli import app
from toontalker_bench.core.config import Params
from toontalker_bench.data.checksums import compare_checksums, write_checksums
from toontalker_bench.data.stages import STAGES


def _tree(root: Path) -> Params:
    params = Params()
    for i, st in enumerate(STAGES):
        out = root / st.name
        getattr(params, st.name).out_dir = str(out)
        (out / "sub").mkdir(parents=True)
        (out / "sub" / f"f{i}.bin").write_bytes(bytes([i]) * 10)
        (out / ".parts").mkdir()
        (out / ".parts" / "job.json").write_text("{}")  # bookkeeping: not listed
    return params


def test_write_then_check_names_the_changed_file(tmp_path: Path) -> None:
    params = _tree(tmp_path / "data")
    listing = tmp_path / "sums.sha256"
    assert write_checksums(params, listing) == len(STAGES)
    first = f"{tmp_path}/data/{STAGES[0].name}/sub/f0.bin"
    assert listing.read_text().splitlines()[0] == f"{hashlib.sha256(bytes(10)).hexdigest()}  {first}"
    assert compare_checksums(params, listing) == {"differ": [], "missing": [], "extra": []}
    Path(first).write_bytes(b"other")
    (tmp_path / "data" / STAGES[1].name / "new.txt").write_text("x")
    (tmp_path / "data" / STAGES[2].name / "sub" / "f2.bin").unlink()
    res = compare_checksums(params, listing)
    assert res == {"differ": [first], "missing": [f"{tmp_path}/data/{STAGES[2].name}/sub/f2.bin"],
                   "extra": [f"{tmp_path}/data/{STAGES[1].name}/new.txt"]}


def test_cli_check_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = _tree(Path("data"))
    sets = [a for st in STAGES for a in ("--set", f"{st.name}.out_dir={getattr(params, st.name).out_dir}")]
    runner = CliRunner()
    ok = runner.invoke(app, [*sets, "data", "checksums", "--write", "sums.sha256"])
    assert ok.exit_code == 0 and f"wrote {len(STAGES)} checksums" in ok.output
    assert "every file matches" in runner.invoke(app, [*sets, "data", "checksums", "--check", "sums.sha256"]).output
    Path(f"data/{STAGES[-1].name}/sub/f{len(STAGES) - 1}.bin").write_bytes(b"x")
    bad = runner.invoke(app, [*sets, "data", "checksums", "--check", "sums.sha256"])
    assert bad.exit_code != 0 and f"differ (1): data/{STAGES[-1].name}/sub/f{len(STAGES) - 1}.bin" in bad.output
