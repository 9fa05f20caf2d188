"""`toontalker-bench evaluate metrics`: results, JSON, and one-line user errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toontalker_bench.cli import main


def _write(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture()
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def test_reconstruction_metrics_to_json(tmp_path: Path, frames: np.ndarray, capsys) -> None:
    gen = _write(tmp_path / "gen", frames)
    drv = _write(tmp_path / "drv", 255 - frames)
    out = tmp_path / "m.json"
    code = main(["evaluate", "metrics", "--generated", str(gen), "--driving", str(drv), "--metrics", "l1,psnr",
                 "--device", "cpu", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    expected = np.abs(frames.astype(float) - (255 - frames)).mean() / 255
    assert res["l1"]["value"] == pytest.approx(expected) and res["l1"]["n"] == 3
    assert res["psnr"]["backend"] == "numpy"
    assert "l1" in capsys.readouterr().out


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    logs = ("DEBUG ", "INFO ", "WARNING ")  # stdlib logging lines (e.g. an asset built on first use) are not the error
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(logs)]
    assert lines[0].startswith("error: ") and all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
    return lines[0]


def test_bad_inputs_are_one_line_exit_2(tmp_path: Path, frames: np.ndarray, capsys) -> None:
    gen = _write(tmp_path / "gen", frames)
    base = ["evaluate", "metrics", "--generated", str(gen), "--metrics", "l1", "--device", "cpu"]
    short = _write(tmp_path / "short", frames[:2])
    assert "driving video has 2 frames, fewer than the 3 generated" in _error(capsys, base + ["--driving", str(short)])
    assert "generated video has 2 frames, fewer than the 3 driving" in _error(
        capsys, ["evaluate", "metrics", "--generated", str(short), "--metrics", "l1", "--device", "cpu", "--driving",
                 str(gen)])
    assert "needs --reference" in _error(capsys, ["evaluate", "metrics", "--generated", str(gen), "--metrics", "fid"])
    (tmp_path / "empty").mkdir()
    assert "empty folder" in _error(capsys, base + ["--driving", str(tmp_path / "empty")])
    junk = _write(tmp_path / "junk", frames)
    (junk / "notes.txt").write_text("x")
    assert "non-image file" in _error(capsys, base + ["--driving", str(junk)])
    mixed = _write(tmp_path / "mixed", frames)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(mixed / "0001.png")
    assert "different resolutions" in _error(capsys, base + ["--driving", str(mixed)])
    big = _write(tmp_path / "big", np.zeros((3, 48, 48, 3), np.uint8))
    assert "32x32" in _error(capsys, base + ["--driving", str(big)])
    assert "unknown metric" in _error(capsys, base[:-4] + ["--metrics", "nope", "--driving", str(gen)])
    assert "needs --driving" in _error(capsys, base)


def test_face_never_found_is_a_user_error(tmp_path: Path, frames: np.ndarray, capsys) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    gen = _write(tmp_path / "gen", noise)
    msg = _error(capsys, ["evaluate", "metrics", "--generated", str(gen), "--driving", str(gen), "--metrics", "akd",
                          "--device", "cpu"])
    assert "no face found in any generated frame" in msg


def test_fid_accepts_a_mixed_resolution_folder_as_pytorch_fid_does(tmp_path: Path, capsys) -> None:
    """FID/KID alone read the files themselves: each image is fed at its own size (the network resizes to 299), so a
    folder of mixed resolutions is fine; the value equals the one from the same images resized beforehand to one
    size only when nothing was resized, so check against features computed one image at a time."""
    from toontalker_bench.metrics.fid import extractor, fid_from_features

    rng = np.random.default_rng(4)
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir(), ref.mkdir()
    for i, size in enumerate((40, 40, 56, 56, 40)):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(gen / f"{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(ref / f"{i:02d}.png")
    out = tmp_path / "fid.json"
    assert main(["--set", "eval.fid_min_frames=2", "evaluate", "metrics", "--generated", str(gen), "--reference",
                 str(ref), "--metrics", "fid", "--device", "cpu", "--json", str(out)]) == 0, capsys.readouterr().err
    got = json.loads(out.read_text())["fid"]
    ext = extractor("cpu", 16)
    one_by_one = np.concatenate([ext.features(np.asarray(Image.open(f).convert("RGB"))[None]) for f in
                                 sorted(gen.iterdir())])
    want = fid_from_features(one_by_one, ext.features_of_path(ref))
    assert got["value"] == pytest.approx(want, rel=1e-4) and got["extra"]["reliable"] is False
