"""The demo corpus: ground truth checked against the pixels, determinism, resumability, manifest."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toontalker_bench.cli import main
from toontalker_bench.core.config import load_params
from toontalker_bench.core.video import probe, read_frames
from toontalker_bench.data import synth
from toontalker_bench.data.synth import cartoon
from toontalker_bench.data.synth import motion as synth_motion
from toontalker_bench.data.synth import plan as synth_plan
from toontalker_bench.data.synth import render as synth_render
from toontalker_bench.data.synth import stage as synth_stage
from toontalker_bench.faces.pose import MORPHS

MI = {n: i for i, n in enumerate(MORPHS)}
GT_COLUMNS = ["frame", "shot", "identity", "domain", "has_face", "box_x0", "box_y0", "box_x1", "box_y1", "landmarks",
              "motion"]
SMALL = ["synth.cartoon_videos=1", "synth.real_videos=1", "synth.shots_per_video=3", "synth.shot_seconds=[0.6,0.8]",
         "synth.width=320", "synth.height=180", "synth.no_face_shot_prob=0.34", "workers=1"]


def small_params(tmp: Path, *extra: str):  # noqa: ANN201
    return load_params(None, SMALL + [f"synth.out_dir={tmp}", *extra])  # manifest: <tmp>/demo.csv


def synth_cli(out: Path) -> dict:
    """Run ``data synth`` through the CLI in a fresh interpreter (libraries loaded by other tests, e.g.
    onnxruntime, change the process's floating-point state and with it x264's bit-exact output)."""
    args = [a for s in SMALL for a in ("--set", s)]
    args += ["data", "synth", "--out", str(out)]  # --out alone sends the manifest to OUT/demo.csv
    res = subprocess.run([sys.executable, "-m", "toontalker_bench", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    run_facts = json.loads((out.parent / "reports" / "synth.json").read_text())  # timings, generated/skipped
    return json.loads((out / "report.json").read_text()) | run_facts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, synth_cli(out)


def gt_of(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / f"{name}.gt.parquet")


def motion(**kw: float) -> np.ndarray:
    m = np.zeros(20)
    for k, v in kw.items():
        m[{"yaw": 17, "pitch": 18, "roll": 19}.get(k, MI.get(k, -1))] = v
    return m


# ------------------------------------------------------------------------------------------------ corpus
def test_files_schema_and_report(corpus: tuple[Path, dict]) -> None:
    out, report = corpus
    assert report["videos"] == 3 and report["generated"] == 3 and not report["failed"]
    for name in ("cartoon_000", "real_000", "real_carphone"):
        gt = gt_of(out, name)
        assert list(gt.columns) == GT_COLUMNS
        assert len(gt) == probe(out / f"{name}.mp4").n_frames
        assert gt.frame.tolist() == list(range(len(gt)))
        assert all(len(v) == 136 for v in gt.landmarks) and all(len(v) == 20 for v in gt.motion)
    for name in ("cartoon_000", "real_000"):
        gt = gt_of(out, name)
        info = probe(out / f"{name}.mp4")
        assert (info.width, info.height, info.codec) == (320, 180, "h264")
        face = gt[gt.has_face]
        mot = np.stack(face.motion.to_numpy())
        assert np.isfinite(mot).all() and (mot[:, :17] >= 0).all() and (mot[:, :17] <= 1).all()
        assert np.isfinite(np.stack(face.landmarks.to_numpy())).all()
        assert (face.identity != "").all()
        empty = gt[~gt.has_face]
        assert len(empty) > 0 and (empty.identity == "").all() and empty.box_x0.isna().all()
        assert np.isnan(np.stack(empty.motion.to_numpy())).all()
    clip = gt_of(out, "real_carphone")
    assert clip.has_face.all() and clip.box_x0.isna().all() and np.isnan(np.stack(clip.motion.to_numpy())).all()
    assert set(clip.identity) == {"real_carphone"}
    rows = list(csv.DictReader(open(out / "demo.csv")))
    assert list(rows[0]) == list(synth_stage.MANIFEST_COLUMNS)
    assert [r["source_id"] for r in rows] == ["cartoon_000", "real_000", "real_carphone"]
    assert all(Path(r["url"]).is_file() and r["license"] and r["attribution"] for r in rows)


def test_shot_cuts_are_where_the_pixels_change(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    for name in ("cartoon_000", "real_000"):
        gt = gt_of(out, name)
        frames = read_frames(out / f"{name}.mp4").astype(np.float32)
        diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # diff[i] = frame i+1 vs frame i
        cuts = np.flatnonzero(np.diff(gt.shot.to_numpy())) + 1
        assert len(cuts) == 2
        inside = np.delete(diff, cuts - 1)
        assert diff[cuts - 1].min() > 4 * np.percentile(inside, 95), (name, diff[cuts - 1], np.percentile(inside, 95))


def test_detector_agrees_with_ground_truth(corpus: tuple[Path, dict]) -> None:
    """RetinaFace finds the faces the ground truth records (box overlap) and none in the no-face shots."""
    from retinaface import detect_faces

    out, _ = corpus
    for name in ("cartoon_000", "real_000"):
        gt = gt_of(out, name)
        frames = read_frames(out / f"{name}.mp4")
        hits, ious = 0, []
        face_rows = gt[gt.has_face].iloc[::4]
        for _, r in face_rows.iterrows():
            det = detect_faces(frames[int(r.frame)], score_threshold=0.5)
            if det:
                d = max(det, key=lambda f: f.score)
                hits += 1
                ious.append(_iou((d.x, d.y, d.x + d.width, d.y + d.height), (r.box_x0, r.box_y0, r.box_x1, r.box_y1)))
        assert hits / len(face_rows) >= 0.9, (name, hits, len(face_rows))
        assert np.median(ious) >= 0.5, (name, ious)
        for f in gt[~gt.has_face].frame.iloc[::3]:
            assert not detect_faces(frames[int(f)], score_threshold=0.5), (name, f)


def _iou(a, b) -> float:  # noqa: ANN001
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_cartoon_skin_lies_inside_the_box(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    gt = gt_of(out, "cartoon_000")
    frames = read_frames(out / "cartoon_000.mp4").astype(np.float32) / 255
    for _, r in gt[gt.has_face].groupby("shot").head(1).iterrows():
        ch = synth_render.character(0, int(r.identity.split("_")[1]))
        skin = np.asarray(ch.skin)
        img = frames[int(r.frame)]
        chroma = img / np.maximum(img.sum(-1, keepdims=True), 1e-3)
        is_skin = (np.abs(chroma - skin / skin.sum()).max(-1) < 0.015) & (img.sum(-1) > 0.45 * skin.sum())
        ys, xs = np.nonzero(is_skin[: int(r.box_y1)])  # above the chin (the neck below it is skin-coloured too)
        inside = (xs >= r.box_x0 - 2) & (xs <= r.box_x1 + 2) & (ys >= r.box_y0 - 2)
        assert len(xs) > 200 and inside.mean() > 0.9, (r.identity, len(xs), inside.mean())
        box_area = (r.box_x1 - r.box_x0) * (r.box_y1 - r.box_y0)
        assert inside.sum() / box_area > 0.3


def test_determinism_and_resume(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = corpus
    again = synth_cli(tmp_path)
    for name in ("cartoon_000", "real_000", "real_carphone"):
        pd.testing.assert_frame_equal(gt_of(out, name), gt_of(tmp_path, name))
    # Two processes write the same bytes: videos (H.264 is encoded reproducibly), ground truth, report; the
    # manifest names the out dir. The run facts (timings) live outside, in ../reports/synth.json.
    files = sorted(f.name for f in out.iterdir())
    assert files == sorted(f.name for f in tmp_path.iterdir())
    assert "report.json" in files and sum(f.endswith(".mp4") for f in files) == 3
    assert ".parts" in files  # resume records, one per video
    for name in files:
        if name not in ("demo.csv", ".parts"):
            assert hashlib.sha256((out / name).read_bytes()).digest() == \
                hashlib.sha256((tmp_path / name).read_bytes()).digest(), name
    # The encode is faithful: each run's decoded first shot against the (bit-identical) rendered frames.
    for video in synth_plan.plan(small_params(tmp_path))[:2]:
        shot = video.shots[0]
        raw = [np.stack([f[0] for f in synth_render._shot_frames(video, shot, 0)]) for _ in range(2)]
        np.testing.assert_array_equal(*raw)
        for d in (out, tmp_path):
            dec = read_frames(d / f"{video.name}.mp4", 0, shot.n_frames).astype(np.float64)
            mse = ((dec - raw[0]) ** 2).mean(axis=(1, 2, 3))
            # measured minimum: 36.9 dB (cartoon shot), 31.8 dB (the slow zoom over the coffee photo, crf 20)
            assert (10 * np.log10(255 ** 2 / np.maximum(mse, 1e-9))).min() > 28, (video.name, d)
    rel = lambda p: (p / "demo.csv").read_text().replace(str(p), "OUT")  # noqa: E731 - urls name the out dir
    assert rel(out) == rel(tmp_path)
    rerun = synth.run(small_params(tmp_path))
    assert rerun["skipped"] == 3 and rerun["generated"] == 0 and rerun["frames"] == again["frames"]
    other = synth_plan.plan(small_params(tmp_path, "seed=1"))
    recorded = {f.stem: json.loads(f.read_text())["key"] for f in (tmp_path / ".parts").glob("*.json")}
    assert recorded and not any(recorded.get(v.name) == v.key() for v in other if not v.copy_of)


def test_default_manifest_is_committed_and_current() -> None:
    """manifests/demo.csv is what the default synth run writes (plan only, nothing rendered)."""
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    videos = synth_plan.plan(params)
    rows = synth_stage.manifest_rows(videos, params.synth.out_dir)
    committed = list(csv.DictReader(open(Path(__file__).parents[1] / "manifests" / "demo.csv")))
    assert committed == rows
    assert synth_stage.manifest_path(params.synth) == Path("manifests/demo.csv")
    assert synth_stage.manifest_path(small_params(Path("/x/y")).synth) == Path("/x/y/demo.csv")  # trial runs keep theirs
    assert sum(v.domain == "cartoon" for v in videos) >= 6
    cartoon_ids = {s.identity for v in videos for s in v.shots if v.domain == "cartoon" and s.identity}
    assert len(cartoon_ids) >= 24
    seconds = sum(s.n_frames for v in videos for s in v.shots) / params.synth.fps + 4.0  # + the carphone clip
    assert seconds >= 120


# ------------------------------------------------------------------------------------------------ renderers
def _cartoon(m: np.ndarray, idx: int = 3) -> tuple[np.ndarray, np.ndarray]:
    canvas = np.full((360, 640, 3), 0.5, np.float32)
    img, lm, _ = cartoon.render(synth_render.character(0, idx), m, canvas, (320.0, 170.0), 90.0)
    return img, lm


def _region(lm: np.ndarray, idx: list[int], pad: int = 3) -> tuple[slice, slice]:
    p = lm[idx]
    return (slice(int(p[:, 1].min()) - pad, int(math.ceil(p[:, 1].max())) + pad),
            slice(int(p[:, 0].min()) - pad, int(math.ceil(p[:, 0].max())) + pad))


EYE_L, EYE_R, MOUTH = list(range(36, 42)), list(range(42, 48)), list(range(48, 60))


def test_cartoon_blink_and_mouth_change_their_regions_only() -> None:
    base, lm = _cartoon(motion())
    blink, lm_b = _cartoon(motion(blink_left=1.0))
    eye_l, eye_r = _region(lm, EYE_L), _region(lm, EYE_R)
    white = lambda im: int(((im > 0.85).all(-1)).sum())  # noqa: E731 - sclera/highlight pixels
    assert white(base[eye_l]) > 80 and white(blink[eye_l]) < 0.1 * white(base[eye_l])
    assert np.abs(blink[eye_r] - base[eye_r]).max() < 1e-6  # the other eye is untouched
    assert np.abs(lm_b[EYE_L][[1, 2], 1] - lm_b[EYE_L][[5, 4], 1]).max() < 0.2 * np.abs(lm[37, 1] - lm[41, 1])
    opened, lm_o = _cartoon(motion(mouth_open=1.0))
    dark = lambda im: int((im.max(-1) < 0.4).sum())  # noqa: E731 - mouth interior
    big = _region(lm_o, MOUTH, 6)
    assert dark(opened[big]) > 5 * max(dark(base[big]), 20)
    assert np.abs(opened[eye_l] - base[eye_l]).max() < 1e-6
    assert lm_o[57, 1] - lm_o[51, 1] > 2 * (lm[57, 1] - lm[51, 1])


def _match(a: np.ndarray, b: np.ndarray, p: np.ndarray, half: int = 9, search: int = 24) -> np.ndarray:
    """Where the patch of ``a`` around ``p`` is found in ``b`` (normalised cross-correlation)."""
    import cv2

    x, y = int(round(p[0])), int(round(p[1]))
    tpl = a[y - half:y + half + 1, x - half:x + half + 1]
    win = b[y - half - search:y + half + search + 1, x - half - search:x + half + search + 1]
    res = cv2.matchTemplate(win.astype(np.float32), tpl.astype(np.float32), cv2.TM_CCOEFF_NORMED)
    dy, dx = np.unravel_index(np.argmax(res), res.shape)
    return np.array([x + dx - search, y + dy - search], np.float64)


def test_cartoon_yaw_is_3d_and_landmarks_follow_pixels() -> None:
    a, lm_a = _cartoon(motion())
    b, lm_b = _cartoon(motion(yaw=15.0))
    shift = lm_b - lm_a
    assert shift[30, 0] > 10  # yaw > 0 moves the nose to the image's right ...
    assert shift[30, 0] > 2 * abs(shift[[0, 16], 0].mean())  # ... more than the face outline: a 3D turn
    ratio = (lm_b[45, 0] - lm_b[42, 0]) / (lm_b[39, 0] - lm_b[36, 0])  # the eye turning away is foreshortened
    assert ratio < 0.9
    for i in (36, 39, 42, 45, 48, 54):
        found = _match(a, b, lm_a[i])
        assert np.abs(found - lm_b[i]).max() <= 2.5, (i, found, lm_b[i])


# The real domain's 3-D heads (realface3d) are tested in tests/test_realface3d.py.


def test_talking_motion_is_smooth_and_speech_like() -> None:
    fps = 25.0
    m = synth_motion.talking_motion(np.random.default_rng(3), 1000, fps)
    assert m.shape == (1000, 20) and (m[:, :17] >= 0).all() and (m[:, :17] <= 1).all()
    mouth = m[:, MI["mouth_open"]]
    spec = np.abs(np.fft.rfft(mouth - mouth.mean())) ** 2
    freqs = np.fft.rfftfreq(len(mouth), 1 / fps)
    band = spec[(freqs >= 2) & (freqs <= 8)].sum() / spec[freqs > 0].sum()
    assert band > 0.3  # syllable-rate energy (0.39 measured for this seed)
    blinks = np.flatnonzero(np.diff((m[:, MI["blink_left"]] > 0.5).astype(int)) == 1)
    assert 5 <= len(blinks) <= 25  # ~one every 3 s over 40 s
    assert np.abs(np.diff(m[:, 17])).max() < 3.0 and np.ptp(m[:, 17]) > 15  # smooth, yet turning


def test_cli_rejects_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "synth.width=641", "data", "synth", "--out", "/nonexistent/x"]) == 2
    assert "synth.width" in capsys.readouterr().err
    assert main(["--set", "synth.shot_seconds=abc", "data", "synth"]) == 2
