"""Align stage: square unstretched crops, coordinates in crop pixels, resumability after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toontalker_bench.core.config import Params, to_dict
from toontalker_bench.core.io import write_table
from toontalker_bench.core.video import read_frames, write_video
from toontalker_bench.data import align

W, H, R = 320, 180, 30


def _disc_video(n: int, centres: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.full((n, H, W, 3), 90, np.uint8)
    for i, (cx, cy) in enumerate(centres):
        frames[i][(xx - cx) ** 2 + (yy - cy) ** 2 <= R * R] = (250, 250, 250)
    return frames


def _mask_stats(img: np.ndarray) -> tuple[float, float, float, float]:
    m = img.mean(axis=2) > 170
    ys, xs = np.nonzero(m)
    return xs.mean(), ys.mean(), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)


@pytest.mark.parametrize("x0,y0,side", [(100, 40, 100), (-25, -25, 120), (225, 85, 120)])
def test_crop_is_square_and_keeps_a_circle_round(x0: int, y0: int, side: int) -> None:
    frame = _disc_video(1, np.array([[x0 + side / 2, y0 + side / 2]]))[0]
    out = align.crop_square(frame, x0, y0, side, 64, "constant")
    assert out.shape == (64, 64, 3)
    cx, cy, w, h = _mask_stats(out)
    expect = 2 * R * 64 / side
    assert abs(w - h) <= 1.5  # a circle stays a circle: no stretching even when the square leaves the frame
    assert abs(w - expect) <= 2.5 and abs(h - expect) <= 2.5
    assert abs(cx - 31.5) <= 1.0 and abs(cy - 31.5) <= 1.0


def test_padding_modes() -> None:
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    const = align.crop_square(frame, -2, -2, 6, 6, "constant")
    assert (const[:2] == 0).all() and (const[2:, 2:] == frame[:4, :4]).all()
    edge = align.crop_square(frame, -2, -2, 6, 6, "edge")
    assert (edge[0, 2:] == frame[0, :4]).all() and (edge[2:, 0] == frame[:4, 0]).all()
    refl = align.crop_square(frame, -2, -2, 6, 6, "reflect")
    assert (refl[0, 2:] == frame[2, :4]).all()  # row -2 mirrors row 2


def test_crop_boxes_fixed_and_smooth() -> None:
    boxes = np.array([[10, 20, 50, 80], [30, 20, 70, 80], [20, 30, 60, 90]], float)  # 40x60 boxes
    fixed = align.crop_boxes(boxes, 0.5, "fixed", 1)
    # union 10..70 x 20..90 -> side 70*1.5 = 105 around centre (40, 55)
    assert (fixed == [[-12, 2, 105]] * 3).all() or (fixed == [[-13, 2, 105]] * 3).all()
    smooth = align.crop_boxes(boxes, 0.0, "smooth", 1)
    assert smooth[:, 2].tolist() == [60, 60, 60]
    assert smooth[0, :2].tolist() == [0, 20]


def test_to_crop_maps_box_corners() -> None:
    crops = np.array([[100, 50, 200], [0, 0, 128]])
    pts = np.array([[[100, 50], [300, 250]], [[0, 0], [128, 128]]], float)
    np.testing.assert_allclose(align.to_crop(pts, crops, 256), [[[0, 0], [256, 256]], [[0, 0], [256, 256]]])


def _write_inputs(root: Path, n_sources: int = 3, n: int = 40) -> Params:
    raw, tubes_dir = root / "raw", root / "tubes"
    rows, tubes = [], []
    (tubes_dir / "tracks").mkdir(parents=True)
    for s in range(n_sources):
        sid = f"src{s}"
        t = np.arange(n)
        centres = np.stack([60 + 3 * t + 20 * s, 60 + t], 1).astype(float)
        write_video(raw / f"{sid}.mp4", _disc_video(n, centres), fps=25.0)
        rows.append(dict(source_id=sid, domain="cartoon" if s % 2 else "real", identity=f"id{s}", status="ok",
                         path=f"{sid}.mp4", gt_path="", fps=25.0, width=W, height=H, n_frames=n))
        a, b = 5, n - 3
        c = centres[a:b]
        boxes = np.concatenate([c - R, c + R], 1).astype(np.float32)
        lm68 = np.repeat(c[:, None, :], 68, 1).astype(np.float32)
        np.savez(tubes_dir / "tracks" / f"{sid}-s000-t00.npz", frames=np.arange(a, b), boxes=boxes, scores=np.ones(b - a, np.float32),
                 landmarks68=lm68, landmarks5=lm68[:, :5], detected=np.ones(b - a, bool), gt_box=boxes,
                 motion=np.zeros((b - a, 20), np.float32))
        tubes.append(dict(tube_id=f"{sid}-s000-t00", source_id=sid, domain=rows[-1]["domain"], identity=f"id{s}",
                          shot=0, start_frame=a, end_frame=b, n_frames=b - a, mean_score=1.0,
                          median_face_px=2.0 * R, detector="test"))
    write_table(raw / "sources.parquet", pd.DataFrame(rows))
    write_table(tubes_dir / "tubes.parquet", pd.DataFrame(tubes))
    p = Params()
    p.workers = 1
    p.scrape.out_dir, p.tubes.out_dir, p.align.out_dir = str(raw), str(tubes_dir), str(root / "clips")
    p.align.size, p.align.increase, p.align.box_mode = 64, 0.3, "smooth"
    p.align.smooth_window = 1
    return p


def test_align_stage_clips_follow_the_face(tmp_path: Path) -> None:
    p = _write_inputs(tmp_path, n_sources=1)
    p.align.write_png = True
    report = align.run(p)
    assert report["clips"] == 1
    clips = pd.read_parquet(tmp_path / "clips" / "clips.parquet")
    row = clips.iloc[0]
    assert row.n_frames == 32 and row["size"] == 64 and row.crop_size == round(60 * 1.3)
    frames = read_frames(tmp_path / "clips" / row.path)
    assert frames.shape == (32, 64, 64, 3)
    ann = np.load(tmp_path / "clips" / f"{row.clip_id}.npz")
    for img, lm in zip(frames[::7], ann["landmarks68"][::7]):
        cx, cy, w, h = _mask_stats(img)
        assert abs(cx - lm[0, 0]) < 1.5 and abs(cy - lm[0, 1]) < 1.5  # centre landmark lands on the disc centre
        assert abs(w - h) <= 2
    np.testing.assert_allclose(ann["gt_box"][:, 2] - ann["gt_box"][:, 0], 60 * 64 / row.crop_size, atol=0.6)
    from PIL import Image

    pngs = sorted((tmp_path / "clips" / f"{row.clip_id}.png").iterdir())
    assert len(pngs) == 32
    assert np.abs(np.asarray(Image.open(pngs[5])).astype(int) - frames[5]).mean() < 3  # same frame, before H.264
    assert align.run(p)["sources_resumed"] == 1


def _tree(folder: Path) -> dict[str, bytes]:
    return {f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_killed_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    ref = _write_inputs(tmp_path / "ref", n_sources=4)
    align.run(ref)
    p = _write_inputs(tmp_path / "kill", n_sources=4)
    code = ("import sys, json; from toontalker_bench.core.config import Params, from_dict; from toontalker_bench.data "
            "import align; align.run(from_dict(Params, json.loads(sys.argv[1])))")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(to_dict(p))], cwd=os.getcwd())
    parts = Path(p.align.out_dir) / ".parts"

    def finished_parts() -> int:  # not the hidden temporary files of a part being written (pathlib globs match them)
        return len([f for f in parts.glob("*.json") if not f.name.startswith(".")]) if parts.is_dir() else 0

    deadline = time.time() + 60
    while time.time() < deadline and finished_parts() < 1:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = finished_parts()
    assert 1 <= done_before < 4, "the kill should land part-way"
    assert not (Path(p.align.out_dir) / "clips.parquet").exists()
    report = align.run(p)
    assert report["sources_resumed"] == done_before
    a = pd.read_parquet(Path(ref.align.out_dir) / "clips.parquet")
    b = pd.read_parquet(Path(p.align.out_dir) / "clips.parquet")
    pd.testing.assert_frame_equal(a, b)
    # every file byte for byte, report and resume records (.parts) included: the kill leaves no trace
    got, want = _tree(Path(p.align.out_dir)), _tree(Path(ref.align.out_dir))
    assert sorted(got) == sorted(want) and len(want) == 2 * len(a) + 2 + 4  # clips (mp4, npz), table, report, parts
    assert [f for f in want if got[f] != want[f]] == []


def test_only_the_tubes_frames_are_decoded_and_the_clips_are_the_same(tmp_path: Path) -> None:
    """Tubes in the 2nd and 3rd of three shots (a key frame at each cut): align decodes from the key frames, only
    the tubes' frames, and converts only the crops; the clips equal crops of the video decoded front to back."""
    from helpers_media import multishot_frames

    from toontalker_bench.core.video import VideoWriter, iter_frames, key_frames

    n = 120
    centres = np.stack([60 + np.arange(n), 70 + 0.5 * np.arange(n)], 1)
    disc = _disc_video(n, centres).mean(axis=3) > 170
    frames = np.stack(list(multishot_frames((40, 40, 40), size=(W, H), seed=5)))  # hard cuts at 40 and 80
    frames[disc] = 250
    raw = tmp_path / "raw"

    def write(path: Path) -> None:  # a key frame every 40 frames, B-frames in between
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w", format="mp4") as c:
            st = c.add_stream("libx264", rate=25)
            st.width, st.height, st.pix_fmt = W, H, "yuv420p"
            st.options = {"x264-params": "keyint=40:min-keyint=40:scenecut=0", "threads": "1"}
            for f in frames:
                for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pkt)
            for pkt in st.encode():
                c.mux(pkt)

    write(raw / "src0.mp4")
    assert key_frames(raw / "src0.mp4") == [0, 40, 80]
    spans = [(44, 76), (86, 118)]
    p = _write_inputs(tmp_path, n_sources=1, n=n)  # rewrites src0.mp4; put ours back and its tubes in
    write(raw / "src0.mp4")
    tubes = []
    for k, (a, b) in enumerate(spans):
        c = centres[a:b]
        boxes = np.concatenate([c - R, c + R], 1).astype(np.float32)
        lm = np.repeat(c[:, None, :], 68, 1).astype(np.float32)
        np.savez(tmp_path / "tubes" / "tracks" / f"src0-s00{k + 1}-t00.npz", frames=np.arange(a, b), boxes=boxes,
                 scores=np.ones(b - a, np.float32), landmarks68=lm, landmarks5=lm[:, :5], detected=np.ones(b - a, bool),
                 gt_box=boxes, motion=np.zeros((b - a, 20), np.float32))
        tubes.append(dict(tube_id=f"src0-s00{k + 1}-t00", source_id="src0", domain="real", identity="id0", shot=k + 1,
                          start_frame=a, end_frame=b, n_frames=b - a, mean_score=1.0, median_face_px=2.0 * R,
                          detector="test"))
    (tmp_path / "tubes" / "tracks" / "src0-s000-t00.npz").unlink()
    write_table(tmp_path / "tubes" / "tubes.parquet", pd.DataFrame(tubes))
    report = align.run(p)
    assert report["clips"] == 2 and report["frames_decoded"] == sum(b - a for a, b in spans)  # 64 of 120 frames
    full = list(iter_frames(raw / "src0.mp4"))
    for t, (a, b) in zip(tubes, spans):
        with np.load(tmp_path / "tubes" / "tracks" / f"{t['tube_id']}.npz") as z:
            crops = align.crop_boxes(z["boxes"], p.align.increase, p.align.box_mode, p.align.smooth_window)
        ref = tmp_path / "ref" / f"{t['tube_id']}.mp4"
        with VideoWriter(ref, fps=25.0, crf=p.align.crf) as w:
            for i in range(a, b):
                w.write(align.crop_square(full[i], *(int(v) for v in crops[i - a]), p.align.size, p.align.pad))
        assert (tmp_path / "clips" / f"{t['tube_id']}.mp4").read_bytes() == ref.read_bytes()


def test_long_sources_split_into_jobs_of_tubes() -> None:
    tubes = [{"tube_id": f"t{k}", "start_frame": a, "end_frame": b}
             for k, (a, b) in enumerate([(0, 100), (90, 400), (1000, 1100), (1600, 1700), (1650, 3000)])]
    assert align.tube_groups(tubes, 2000) == [tubes]  # 3000 frames <= 1.5 x 2000
    assert align.tube_groups(tubes, 0) == [tubes]
    groups = align.tube_groups(tubes, 1000)
    assert [[t["tube_id"] for t in g] for g in groups] == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert align.decode_runs([(0, 100), (90, 400), (1000, 1100)], [0, 500, 950]) == [(0, 400), (1000, 1100)]
    assert align.decode_runs([(0, 100), (1000, 1100)], [0]) == [(0, 1100)]  # no key frame between: decode through
