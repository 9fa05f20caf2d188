"""``train.pair_sampling``: the default draws exactly what the trainer always drew; ``motion`` favours driving frames
whose stored landmarks moved more from the source, ``mixed`` sits between; the setting is checked, recorded in the run
config and named in the variant when it is not the default."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_dataset import build_fixture_dataset

from toontalker_bench.core.config import Params
from toontalker_bench.core.errors import ConfigError
from toontalker_bench.data.dataset import Clip, load_clips
from toontalker_bench.models.base import Capabilities, Method
from toontalker_bench.models.registry import train_config
from toontalker_bench.runs import _save_config, plan_run
from toontalker_bench.train.data import TrainData, driving_weights, normalised_shapes

#: ``TrainData(_plain_clips(), seed=7).indices(step, 6, domain)`` as the trainer drew it before pair sampling existed
DEFAULT_DRAWS = {
    (0, "real"): [[1, 2, 6], [1, 2, 8], [1, 0, 7], [1, 6, 1], [1, 0, 4], [1, 3, 2]],
    (0, "cartoon"): [[2, 2, 1], [2, 0, 1], [2, 2, 1], [1, 7, 1], [2, 1, 0], [2, 1, 0]],
    (1, "real"): [[1, 1, 8], [1, 3, 5], [1, 8, 6], [0, 4, 1], [0, 1, 2], [0, 3, 0]],
    (1, "cartoon"): [[0, 5, 2], [2, 1, 2], [0, 0, 6], [1, 7, 3], [2, 0, 1], [0, 4, 2]],
    (41, "real"): [[1, 1, 3], [0, 0, 4], [1, 3, 7], [1, 2, 7], [1, 2, 3], [0, 0, 3]],
    (41, "cartoon"): [[1, 4, 10], [1, 10, 2], [1, 9, 1], [2, 1, 2], [1, 1, 5], [0, 6, 2]],
}


def _clip(cid: str, domain: str, n: int, landmarks: np.ndarray | None = None) -> Clip:
    return Clip(cid, domain, cid, "train", np.zeros((n, 4, 4, 3), np.uint8), np.full((n, 20), np.nan, np.float32),
                landmarks=landmarks)


def _plain_clips(with_landmarks: bool = False) -> list[Clip]:
    rng = np.random.default_rng(0)
    sizes = (("r0", "real", 5), ("r1", "real", 9), ("c0", "cartoon", 7), ("c1", "cartoon", 12), ("c2", "cartoon", 3))
    return [_clip(cid, dom, n, rng.normal(size=(n, 68, 2)) if with_landmarks else None) for cid, dom, n in sizes]


def _mouth_clip(n: int = 40) -> tuple[Clip, np.ndarray]:
    """A clip whose mouth opens by ``opening[t]`` (a zig-zag, so frames far apart in time are not the ones that differ
    most) while the whole face also drifts and zooms, which the displacement must ignore."""
    rng = np.random.default_rng(1)
    base = rng.uniform(20, 40, (68, 2))
    opening = np.abs(((np.arange(n) * 7) % 23) / 22.0 - 0.3)
    lm = np.repeat(base[None], n, 0)
    lm[:, 48:68, 1] += 6.0 * opening[:, None]
    scale, shift = rng.uniform(0.8, 1.3, n), rng.uniform(-5, 5, (n, 2))
    lm = lm * scale[:, None, None] + shift[:, None]
    return _clip("m", "real", n, lm.astype(np.float32)), opening


def test_default_draws_are_the_ones_runs_always_made() -> None:
    for clips in (_plain_clips(), _plain_clips(with_landmarks=True)):  # stored landmarks change nothing by default
        for data in (TrainData(clips, seed=7), TrainData(clips, seed=7, pair_sampling="random")):
            for (step, domain), rows in DEFAULT_DRAWS.items():
                assert data.indices(step, 6, domain).tolist() == rows
    assert train_config({}).pair_sampling == "random"


def test_motion_draws_more_moved_frames_and_mixed_sits_between() -> None:
    clip, opening = _mouth_clip()
    moved = {}
    for how in ("random", "mixed", "motion"):
        data = TrainData([clip], seed=3, pair_sampling=how)
        rows = np.concatenate([data.indices(step, 16, "real") for step in range(60)])
        assert (rows[:, 1] != rows[:, 2]).all()
        assert (rows == np.concatenate([data.indices(s, 16, "real") for s in range(60)])).all()  # seeded
        moved[how] = float(np.abs(opening[rows[:, 2]] - opening[rows[:, 1]]).mean())
    assert moved["motion"] > 1.3 * moved["random"]
    assert moved["random"] < moved["mixed"] < moved["motion"]


def test_displacement_ignores_translation_and_scale() -> None:
    clip, opening = _mouth_clip(12)
    w = driving_weights(normalised_shapes(clip.landmarks), 0)
    assert w[0] == 0 and w.sum() == pytest.approx(1.0)
    assert np.argmax(w) == np.argmax(np.abs(opening - opening[0]))
    still = clip.landmarks[:1] * np.linspace(1, 2, 5)[:, None, None] + np.linspace(0, 9, 5)[:, None, None]
    assert driving_weights(normalised_shapes(still), 2) == pytest.approx([0.25, 0.25, 0, 0.25, 0.25])


def test_clips_without_landmarks_are_drawn_at_random_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="toontalker_bench.train.data"):
        data = TrainData(_plain_clips(), seed=7, pair_sampling="motion")
    assert len([r for r in caplog.records if "no complete stored landmarks" in r.message]) == 1
    assert "5 of 5 training clips" in caplog.text
    for (step, domain), rows in DEFAULT_DRAWS.items():
        assert data.indices(step, 6, domain).tolist() == rows


def test_bad_pair_sampling_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="pair_sampling 'by-motion'.*random, motion, mixed"):
        train_config({"train": {"pair_sampling": "by-motion"}})
    assert train_config({"train": {"pair_sampling": "mixed"}}).pair_sampling == "mixed"


class _Plain(Method):
    name = "plain"
    capabilities = Capabilities()

    def animate(self, source, driving, *, source_domain, driving_domain, relative=True):  # noqa: ANN001
        return driving


@pytest.mark.parametrize("how", ["motion", "mixed"])
def test_variant_names_a_pair_sampling_other_than_random(how: str) -> None:
    assert _Plain({"train": {"pair_sampling": how}}).variant() == f"pairs={how}"
    assert _Plain({"train": {"pair_sampling": how, "amp_cpu": True}}).variant() == f"bf16-steps; pairs={how}"
    assert _Plain({"train": {"pair_sampling": "random"}}).variant() == _Plain({}).variant() == ""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_dataset(tmp_path_factory.mktemp("ds"), size=32, n_frames=8, train_clips=1, test_clips=0,
                                 with_protocol=False)


def test_clips_carry_their_stored_landmarks_frame_for_frame(dataset: Path) -> None:
    clips = load_clips(dataset, "train", 32, frames_per_clip=4)
    for clip in clips:
        with np.load(dataset / "clips" / f"{clip.clip_id}.npz") as z:
            assert np.array_equal(clip.landmarks, z["landmarks68"][[0, 2, 5, 7]])
    assert all(normalised_shapes(c.landmarks) is not None for c in clips)


@pytest.mark.parametrize("overrides", [[], ["train.pair_sampling=motion"]])
def test_run_config_records_the_pair_sampling(dataset: Path, tmp_path: Path, overrides: list[str]) -> None:
    params = Params()
    params.build.out_dir, params.run.runs_dir = str(dataset), str(tmp_path)
    plan = plan_run(params, "fomm", "tiny", overrides, run_id="r", evaluate=False)
    _save_config(plan)
    saved = yaml.safe_load((tmp_path / "fomm" / "r" / "config.yaml").read_text())
    assert saved["config"]["train"]["pair_sampling"] == ("motion" if overrides else "random")
    assert train_config(saved["config"]) == plan.train_config
