"""A metric declares itself: one class registered at runtime is evaluated, listed by the CLI and shown on the board;
the default metric lists of params.yaml and EvalParams are the ones the registered metrics declare."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from toontalker_bench.cli import main
from toontalker_bench.core.config import EvalParams
from toontalker_bench.eval.evaluator import Evaluator
from toontalker_bench.leaderboard.render import render_markdown
from toontalker_bench.leaderboard.store import PROVENANCE, publish_rows, read_leaderboard
from toontalker_bench.metrics import METRICS, Metric, Pair, default_metrics, register

ROOT = Path(__file__).resolve().parents[1]


class MeanLevel(Metric):
    """Mean pixel value of the generated frames (a toy metric registered by this test only)."""

    name, direction, order, validation = "toy_mean_level", "higher", 15, None

    def __init__(self) -> None:
        super().__init__()
        self.add_state("_first_pair", None, "first")

    def update(self, pair: Pair) -> None:
        gen = pair.frames("generated")
        self._first_pair = self._first_pair or pair.pair_id
        self._per_video.append(float(gen.mean()))
        self._n_frames += len(gen)


@pytest.fixture()
def toy() -> Iterator[type[MeanLevel]]:
    register(MeanLevel)
    try:
        yield MeanLevel
    finally:
        METRICS.unregister(MeanLevel.name)
    assert MeanLevel.name not in METRICS


def _level(value: int, n: int) -> np.ndarray:
    return np.full((n, 16, 16, 3), value, np.uint8)


def test_params_yaml_and_eval_params_hold_the_declared_default_lists() -> None:
    """params.yaml is where a user edits the per-task lists; as shipped they are what the metrics declare."""
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["eval"]
    assert shipped["self_metrics"] == EvalParams().self_metrics == default_metrics("self")
    assert shipped["cross_metrics"] == EvalParams().cross_metrics == default_metrics("cross")
    # the headline relative-motion metrics lead both lists; aed_id is in neither
    assert default_metrics("self")[:2] == default_metrics("cross")[:2] == ["apd_rel_deg", "aed_exp_rel"]
    assert "aed_id" in METRICS and "aed_id" not in default_metrics()


def test_a_registered_metric_is_evaluated_per_video_and_merged_by_its_declared_state(toy: type[MeanLevel]) -> None:
    ev = Evaluator([toy.name, "l1"], device="cpu", cache=False)
    assert not ev.needs_faces
    first = ev.evaluate_pair(ev.pair(_level(10, 2), _level(10, 2), pair_id="p1"))
    second = ev.evaluate_pair(ev.pair(_level(30, 4), _level(20, 4), pair_id="p2"))
    assert first[toy.name].value == 10.0 and second[toy.name].value == 30.0
    out = ev.compute()
    assert out[toy.name].value == pytest.approx(20.0)  # per video, then over videos (frame mean: 23.3)
    assert out[toy.name].n == 6 and out[toy.name].extra["n_videos"] == 2
    assert out["l1"].value == pytest.approx((0 + 10 / 255) / 2)
    agg = ev.aggregates[toy.name]
    assert agg._first_pair == "p1"  # "first": kept, not overwritten by the second pair's
    agg.reset()
    assert agg._per_video == [] and agg._n_frames == 0 and agg._first_pair is None


def test_a_registered_metric_is_listed_and_computed_by_the_cli(toy: type[MeanLevel], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "metrics", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"{toy.name} ↑" in help_text and "(default: all but toy_mean_level, aed_id)" in help_text
    gen = tmp_path / "gen"
    gen.mkdir()
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(gen / f"{i:04d}.png")
    out = tmp_path / "m.json"
    code = main(["evaluate", "metrics", "--generated", str(gen), "--metrics", toy.name, "--device", "cpu",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())[toy.name]["value"] == pytest.approx(frames.astype(float).mean())


def test_a_registered_metric_is_a_leaderboard_column(toy: type[MeanLevel], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def row(run_id: str, method: str, level: float, apd: float, seed: int = 0) -> dict:
        r = {k: "" for k in PROVENANCE}
        r.update(run_id=run_id, method=method, profile="tiny", task="self_real", dataset_version="sha256:x",
                 code_commit="abc", seed=seed, steps=10, train_seconds=1.0, device="cpu", date="2026-01-01T00:00:00Z",
                 size=64, l1=0.1, l1_backend="numpy", apd_rel_deg=apd, apd_rel_deg_backend="bfm3ddfa",
                 **{toy.name: level, f"{toy.name}_backend": "toy"})
        return r

    path = tmp_path / "board.csv"
    publish_rows(path, [row("a0", "alpha", 120.0, 2.0), row("a1", "alpha", 121.0, 2.1, seed=1),
                        row("b0", "beta", 90.0, 1.0), row("b1", "beta", 91.0, 1.1, seed=1),
                        {**row("c", "copy-source", 100.0, 3.0), "bracket": "yes"}])
    md = render_markdown(read_leaderboard(path), "demo")
    # not a headline metric: after the headline apd_rel_deg, in the other groups (l1: image quality; the toy: other);
    # higher is better, so alpha's value is the best (and clear of copy-source's by more than its seed spread)
    assert f"| method | profile | n | apd_rel_deg ↓ | l1 ↓ | {toy.name} ↑ |" in md
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "**120.5 ± 0.71**" in lines["alpha"] and "**1.05 ± 0.071**" in lines["beta"]
    assert f"**90.5" not in lines["beta"]
    monkeypatch.setattr(toy, "headline", True)  # a headline metric leads, in declared order (15: after apd_rel_deg)
    md = render_markdown(read_leaderboard(path), "demo")
    assert f"| method | profile | n | apd_rel_deg ↓ | {toy.name} ↑ | l1 ↓ |" in md
