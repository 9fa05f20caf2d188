"""Validation statistics against independent formulas, and the report on a tiny demo corpus (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from toontalker_bench.eval import validate as V
from toontalker_bench.eval import validation_report, verdicts


def test_roc_auc_counts_ordered_pairs() -> None:
    pos, neg = np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.3, 0.4])
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert V.roc_auc(pos, neg) == pytest.approx(wins / 9)


def test_pearson_and_ridge_probe_recover_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    w = rng.normal(size=(4, 2))
    y = x @ w + 0.5
    pred = V.ridge_probe(x[:150], y[:150], x[150:], lam=1e-9)
    np.testing.assert_allclose(pred, y[150:], atol=1e-6)
    assert V.pearson(pred[:, 0], y[150:, 0]) == pytest.approx(np.corrcoef(pred[:, 0], y[150:, 0])[0, 1])


def test_split_is_identity_disjoint_and_stable() -> None:
    ids = [f"cartoon_{i:02d}" for i in range(24)]
    splits = [V._split_of(i) for i in ids]
    assert splits == [V._split_of(i) for i in ids]
    assert 0 < splits.count("test") < len(ids)


def test_report_names_its_figures_file_above_every_table() -> None:
    text = "intro\n\n| a |\n|---|\n| 1.5 |\n\ntext\n| b |\n|---|\n"
    marked = validation_report.mark_tables(text, "docs/x.json")
    assert marked.count("<!-- figures: docs/x.json -->\n|") == 2
    assert marked.replace("<!-- figures: docs/x.json -->\n", "") == text


def test_validation_markers_follow_the_targets_per_domain_and_task() -> None:
    """A metric is marked unless its estimator meets the target in every domain the task reads (generated = source
    domain, and the driving domain for motion metrics) and the sensitivity suite found it monotone and flat."""
    from toontalker_bench.metrics import MetricValue

    report = {"pose_mae_deg": {"cartoon": 4.2, "real": 2.1}, "expression_probe_r": {"cartoon": 0.7, "real": 0.65},
              "identity_auc": {"cartoon": 0.74, "real": 1.0},
              "metrics": {"apd_rel_deg": {"monotone": True, "flat": True},
                          "aed_exp_rel": {"monotone": True, "flat": False}}}
    assert verdicts.validation_problems(report, "apd_rel_deg", "self_real") == []
    assert verdicts.validation_problems(report, "apd_rel_deg", "self_cartoon") == ["pose MAE 4.2 deg > 3 on cartoon"]
    assert verdicts.validation_problems(report, "apd_rel_deg", "cartoon2real") == ["pose MAE 4.2 deg > 3 on cartoon"]
    assert verdicts.validation_problems(report, "aed_exp_rel", "self_real") == [
        "answers to errors it should ignore (sensitivity suite)"]
    assert verdicts.validation_problems(report, "csim", "real2cartoon") == ["identity AUC 0.740 < 0.9 on cartoon"]
    assert verdicts.validation_problems(report, "csim", "cartoon2real") == []  # the generated frames are real
    assert verdicts.validation_problems(report, "l1", "self_cartoon") == [] == verdicts.validation_problems(None, "ssim", "x")
    assert verdicts.validation_problems(None, "csim", "self_real") == ["no metric validation report"]
    report["metrics"]["csim"] = {"monotone": True, "flat": False, "domains": {  # per-domain verdicts win
        "real": {"monotone": True, "flat": True}, "cartoon": {"monotone": True, "flat": False}}}
    assert verdicts.validation_problems(report, "csim", "cartoon2real") == []
    assert verdicts.validation_problems(report, "csim", "self_cartoon") == [
        "answers to errors it should ignore (sensitivity suite) on cartoon", "identity AUC 0.740 < 0.9 on cartoon"]
    report["metrics"]["aed_exp_rel"] = {"monotone": True, "flat": False, "domains": {  # a cross task: its own too
        "real": {"monotone": True, "flat": True}, "cartoon": {"monotone": True, "flat": True},
        "real2cartoon": {"monotone": True, "flat": True}, "cartoon2real": {"monotone": False, "flat": True}}}
    assert verdicts.validation_problems(report, "aed_exp_rel", "real2cartoon") == []
    assert verdicts.validation_problems(report, "aed_exp_rel", "cartoon2real") == [
        "does not grow monotonically with its own injected error on cartoon2real"]
    assert verdicts.validation_problems(report, "aed_exp_rel", "self_real") == []
    # a report counts only for the estimator and the data it validated
    report.update(motion_backend="corpus-ridge:dataset:aaa", identity_backend="sface", dataset_version="dvc:1")
    assert verdicts.validation_problems(report, "apd_rel_deg", "self_real", "corpus-ridge:dataset:aaa", "dvc:1") == []
    assert verdicts.validation_problems(report, "apd_rel_deg", "self_real", "bfm3ddfa-jaw-y", "dvc:2") == [
        "the report validated corpus-ridge:dataset:aaa, this value is from bfm3ddfa-jaw-y",
        "the report validated dataset dvc:1, this value is on dvc:2"]
    assert verdicts.validation_problems(report, "csim", "cartoon2real", "dlib-resnet128") == [
        "the report validated sface, this value is from dlib-resnet128"]
    report["output_size"] = 64  # ... and the outputs' size it read
    assert verdicts.validation_problems(report, "apd_rel_deg", "self_real", output_size=64) == []
    assert verdicts.validation_problems(report, "apd_rel_deg", "self_real", output_size=256) == [
        "the report validated 64-px outputs, this value is of 256-px ones"]
    assert verdicts.validation_problems(report, "l1", "self_real", output_size=256) == []  # pixel metrics need none
    v = MetricValue("apd_rel_deg", 3.0, "bfm3ddfa")
    verdicts.annotate(v, "self_cartoon", None)
    assert v.extra["validation"] == "not validated on this data: no metric validation report"


def test_frames_are_validated_as_the_board_reads_a_small_output() -> None:
    """A 64-px method's output is read enlarged to the analysis size: the validation sees the same frames."""
    from toontalker_bench.metrics.pair import as_method_output, resize_frames

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    out = as_method_output(frames, 64, 256)
    assert out.shape == frames.shape and not np.array_equal(out, frames)
    assert np.array_equal(out, resize_frames(resize_frames(frames, 64), 256))
    assert as_method_output(frames, 0, 256) is frames and as_method_output(frames, 256, 256) is frames


def test_judge_allows_noise_below_the_floor_but_not_a_metric_that_falls() -> None:
    """Monotone: worse overall and no step back by more than SLACK of the total change; flat: another error moves
    it by at most TOLERANCE of that change. Verdicts per domain."""
    from toontalker_bench.eval.sensitivity import SLACK, judge

    def kinds(pose: list[float], identity: list[float]) -> dict:
        return {"pose": {"apd_rel_deg": pose}, "identity": {"apd_rel_deg": identity},
                "expression": {"apd_rel_deg": [pose[0]] * 4}}

    span = 6.0
    noisy = [2.0, 2.0 - 0.9 * SLACK * span, 4.0, 8.0]  # a small step back under the noise floor
    res = judge({"real": kinds(noisy, [2.0, 2.5]), "cartoon": kinds([2.0, 1.0, 1.5, 3.0], [2.0, 4.0])},
                ("apd_rel_deg",))["apd_rel_deg"]
    assert res["domains"]["real"]["monotone"] and res["domains"]["real"]["flat"]
    assert res["domains"]["real"]["cross"]["identity"] == round(0.5 / span, 4)
    assert not res["domains"]["cartoon"]["monotone"] and not res["domains"]["cartoon"]["flat"]
    assert not res["monotone"] and not res["flat"]
    falls = judge({"real": kinds([3.0, 2.5, 2.0, 1.0], [3.0, 3.0])}, ("apd_rel_deg",))["apd_rel_deg"]
    assert not falls["monotone"]


def test_motion_part_measures_every_backend_and_writes_the_summary_keys() -> None:
    """Rendered cartoon and real-head clips with known motion (train and held-out test identities): every generic fit
    variant, MediaPipe (landmark pose and matrix) and the corpus map are measured against the truth, and the summary
    carries the figures the report and the JSON publish."""
    from toontalker_bench.data.dataset import Clip
    from toontalker_bench.data.synth.background import background
    from toontalker_bench.data.synth.cartoon import render
    from toontalker_bench.data.synth.realface3d import RealHead
    from toontalker_bench.data.synth.render import character
    from toontalker_bench.faces.analyzer import FaceAnalyzer

    rng = np.random.default_rng(5)
    clips = []
    for ident, split in ((0, "train"), (1, "train"), (2, "train"), (3, "test")):
        bg = background(rng, 256, 256)
        frames, motion = [], []
        for _ in range(12):
            m = np.zeros(20)
            m[17:] = rng.uniform([-25, -10, -7], [25, 10, 7])
            m[8] = rng.uniform(0, 0.8)
            img, _, _ = render(character(0, ident), m, bg.copy(), (128, 128), 80.0)
            frames.append((img * 255 + 0.5).astype(np.uint8))
            motion.append(m)
        clips.append(Clip(f"c{ident}", "cartoon", f"cartoon_{ident:02d}", split, np.stack(frames), np.array(motion)))
    for name, split in (("astronaut", "train"), ("carphone_a", "train"), ("grace_hopper", "test")):
        head = RealHead.from_photo(name)
        frames, motion = [], []
        for _ in range(10):
            m = np.zeros(20)
            m[17:] = head.pose0 + rng.uniform([-24, -8, -5], [24, 8, 5])
            m[8] = rng.uniform(0, 0.8)
            frame, _, box = head.render(m, (640, 360))
            frames.append(V._square_crop(frame, box))
            motion.append(m)
        clips.append(Clip(name, "real", name, split, np.stack(frames), np.array(motion)))

    m = V.measure_motion(clips, FaceAnalyzer())
    assert m["identities"] == {"cartoon": {"all": 4, "train": 3, "test": 1}, "real": {"all": 3, "train": 2, "test": 1}}
    assert m["corpus"]["backend"] == "corpus-ridge:validation-train-clips" and m["headline_backend"] == "corpus-ridge"
    full, jaw_y = m["backends"]["bfm3ddfa"]["real"], m["backends"]["bfm3ddfa-jaw-y"]["real"]
    assert jaw_y["pose_mae_deg"]["yaw"] < full["pose_mae_deg"]["yaw"]  # the silhouette no longer pulls yaw
    mp, matrix = m["backends"]["mediapipe"], m["backends"]["mediapipe-matrix"]
    assert m["mediapipe_unavailable"] is None and mp["real"]["face_found_rate"] == mp["cartoon"]["face_found_rate"] == 1
    assert mp["real"]["pose_mae_deg"]["yaw"] < matrix["real"]["pose_mae_deg"]["yaw"]  # the matrix under-reads yaw
    assert "box_fallback_rate" not in mp["real"] and "mediapipe" in m["s_per_frame"]
    corpus = m["backends"]["corpus-ridge"]
    assert corpus["cartoon"]["pose_mae_deg"] is None  # fitted on the train clips: measured on test clips only
    assert corpus["cartoon"]["domain_correct_test_clips"] == "1/1" and corpus["real"]["domain_correct_test_clips"] == "1/1"
    assert corpus["cartoon"]["pose_mae_deg_test_mean"] < m["backends"]["bfm3ddfa-jaw-y"]["cartoon"]["pose_mae_deg_test_mean"]
    assert corpus["cartoon"]["expression_direct_r"]["mouth_open"] > 0.5

    summary = V.motion_summary(m)
    assert summary["motion_backend"] == "corpus-ridge:validation-train-clips"
    for key in ("pose_mae_deg", "expression_probe_r", "identities", "pose_mae_deg_per_angle"):
        assert set(summary[key]) == {"cartoon", "real"}, key
    assert summary["pose_mae_deg"]["real"] == pytest.approx(np.mean(list(corpus["real"]["pose_mae_deg_test"].values())))
    text = "\n".join(validation_report.render_motion({**m, "source": "test clips", "clips": len(clips), "frames_per_clip": "all"}))
    assert "corpus-ridge:validation-train-clips" in text and "bfm3ddfa-jaw-y+seqshape" in text
    assert "| `mediapipe` | real |" in text and "`mediapipe-matrix` | cartoon |" in text


def test_identity_separation_scores_same_against_different_identity_pairs() -> None:
    from toontalker_bench.eval.validate import identity_separation

    ids = np.array(["a", "a", "b", "b"])
    clean = np.array([[1, .9, .1, .2], [.9, 1, .3, .1], [.1, .3, 1, .8], [.2, .1, .8, 1]])
    res = identity_separation(clean, ids)
    assert res["auc"] == 1.0 and res["identities"] == 2 and res["embeddings"] == 4
    assert res["same_mean"] == pytest.approx(0.85) and res["diff_mean"] == pytest.approx(0.175)
    mixed = clean.copy()
    mixed[0, 2] = mixed[2, 0] = 0.95  # one different-identity pair above every same-identity pair
    assert identity_separation(mixed, ids)["auc"] == 0.75  # each same pair beats 3 of the 4 different ones
    assert "only 1 identity" in identity_separation(clean[:2, :2], ids[:2])["reason"]
