"""The evaluation engine: relative vs absolute motion metrics on known motion, face analysis at the dataset's
resolution, the content-keyed analysis cache, and merging across shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toontalker_bench.eval.evaluator import Evaluator
from toontalker_bench.faces.analyzer import FaceTrack


def _coeffs(angles_deg: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon-style (T, 257) coefficients carrying ``angles_deg`` (yaw, pitch, roll) and zero expression."""
    c = np.zeros((len(angles_deg), 257))
    c[:, 224:227] = np.radians(angles_deg[:, [1, 0, 2]])  # Deep3D stores rotations about x, y, z
    return c


def test_relative_motion_metrics_score_the_right_answer_zero_and_copying_the_motion() -> None:
    """Driving turns the head from yaw 10 to 30 degrees; the source faces yaw 20. A perfect relative-motion answer
    (source + driving change) scores apd_rel 0, copying the source scores the driving motion's size — while the
    absolute form, which charges the source's own pose, ranks copying better."""
    t = 9
    drv = np.zeros((t, 3))
    drv[:, 0] = 10 + np.linspace(0, 20, t)  # yaw from 10 to 30
    src = np.array([20.0, 0.0, 0.0])
    perfect = src + (drv - drv[0])
    copy = np.repeat(src[None], t, 0)
    half = src + 0.5 * (drv - drv[0])
    jitter = perfect.copy()
    jitter[:, 1] += np.resize([0.0, 4.0, -4.0], t)  # pitch noise the driver does not have
    frames = np.zeros((t, 16, 16, 3), np.uint8)
    scores, extra = {}, {}
    for name, gen in (("perfect", perfect), ("copy", copy), ("half", half), ("jitter", jitter)):
        ev = Evaluator(["apd_rel_deg", "apd_deg"], device="cpu", motion_backend="deep3d", cache=False)
        pair = ev.pair(frames, frames, coefficients={"generated": _coeffs(gen), "driving": _coeffs(drv)})
        scores[name] = {k: v.value for k, v in ev.evaluate_pair(pair).items()}
        extra[name] = ev.compute()["apd_rel_deg"].extra
    assert scores["perfect"]["apd_rel_deg"] == pytest.approx(0.0, abs=1e-9)
    motion = np.abs(drv - drv[0])[1:].mean()  # frame 0 is the reference, left out
    assert scores["copy"]["apd_rel_deg"] == pytest.approx(motion)
    assert scores["perfect"]["apd_deg"] == pytest.approx(10 / 3)  # |src - drv_0| on yaw
    assert scores["perfect"]["apd_deg"] > scores["copy"]["apd_deg"]  # the absolute form prefers doing nothing
    # where the distance comes from: the share of the driving change carried, and how much the output moves at all
    follow = {k: v["follow"] for k, v in extra.items()}
    ratio = {k: v["change_ratio"] for k, v in extra.items()}
    assert follow == pytest.approx({"perfect": 1.0, "copy": 0.0, "half": 0.5, "jitter": 1.0}, abs=1e-9)
    assert ratio["perfect"] == pytest.approx(1.0) and ratio["copy"] == 0.0 and ratio["half"] == pytest.approx(0.5)
    assert ratio["jitter"] == pytest.approx((90 + 24) / 90)  # follows the driver (yaw 2.5 .. 20), plus pitch of its own


def test_face_analysis_runs_at_the_analysis_size_on_full_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, ...]] = []

    class Probe:
        backend = "probe"

        def track(self, frames: np.ndarray, desc: str = "") -> FaceTrack:
            seen.append(frames.shape)
            n = len(frames)
            return FaceTrack(np.zeros((n, 68, 2)), np.zeros((n, 5, 2)), np.ones(n, bool), np.zeros(n, bool),
                             frames.shape[2])

    ev = Evaluator(["akd"], device="cpu", analysis_size=256, face_stride=2, cache=False)
    ev._analyzer = Probe()
    small = np.zeros((6, 64, 64, 3), np.uint8)
    full = np.zeros((6, 256, 256, 3), np.uint8)
    pair = ev.pair(small, small, small[0], full={"driving": full, "source": full[0]})
    ev.evaluate_pair(pair)
    assert sorted(seen) == [(3, 256, 256, 3), (3, 256, 256, 3)]  # generated upscaled, driving read at full size
    assert pair.face_frames("source").shape == (1, 256, 256, 3)


def test_driving_analysis_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toontalker_bench.metrics.pair import AnalysisCache

    calls = []

    class Counting:
        backend = "counting"

        def track(self, frames: np.ndarray, desc: str = "") -> FaceTrack:
            calls.append(len(frames))
            n = len(frames)
            return FaceTrack(np.full((n, 68, 2), 3.0), np.zeros((n, 5, 2)), np.ones(n, bool), np.zeros(n, bool), 32)

    cache = AnalysisCache(tmp_path)
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    a = cache.track(Counting(), frames)
    b = cache.track(Counting(), frames.copy())
    assert calls == [4] and np.array_equal(a.landmarks68, b.landmarks68) and b.size == 32
    other = frames.copy()
    other[0, 0, 0, 0] ^= 1
    cache.track(Counting(), other)
    assert calls == [4, 4]  # another content is analysed anew


def test_pair_analyses_of_driving_frames_are_kept_on_disk(tmp_path: Path) -> None:
    """An analysis such as MediaPipe's readings: driving frames are read once across pairs (and runs), generated
    frames every time; another analysis tag of the same frames is its own entry."""
    from toontalker_bench.metrics.pair import AnalysisCache, Pair

    calls = []

    def analyse(frames: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(frames))
        return {"mean": frames.mean(axis=(1, 2, 3))}

    frames = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    cache = AnalysisCache(tmp_path)
    for _ in range(2):
        pair = Pair(frames, frames.copy(), disk=cache)
        a = pair.analysis("driving", "mean-v1", analyse)
        assert pair.analysis("driving", "mean-v1", analyse) is a  # once per pair
        pair.analysis("generated", "mean-v1", analyse)
    assert calls == [3, 3, 3]
    np.testing.assert_allclose(a["mean"], frames.mean(axis=(1, 2, 3)))
    Pair(frames, frames, disk=cache).analysis("driving", "mean-v2", analyse)
    assert calls == [3, 3, 3, 3]


def test_merged_shards_equal_one_evaluator() -> None:
    rng = np.random.default_rng(3)
    pairs = [(rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (4, 16, 16, 3),
                                                                               dtype=np.uint8)) for _ in range(4)]
    whole = Evaluator(["l1", "psnr"], device="cpu", cache=False)
    shards = [Evaluator(["l1", "psnr"], device="cpu", cache=False) for _ in range(2)]
    for i, (g, d) in enumerate(pairs):
        whole.evaluate_pair(whole.pair(g, d))
        shards[i % 2].evaluate_pair(shards[i % 2].pair(g, d))
    shards[0].merge(shards[1])
    for name, v in whole.compute().items():
        assert shards[0].compute()[name].value == pytest.approx(v.value)
