"""Shot cuts: real PySceneDetect on generated multi-shot videos with known cuts, found by the faces stage's decoding
pass (or by ``detect_shots`` alone), and the ``shots`` stage that writes the shot table from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_media import multishot_frames, remux_faststart, truncate, write_multishot

from toontalker_bench.cli import main
from toontalker_bench.core.config import FacesParams, Params, ScrapeParams, ShotsParams
from toontalker_bench.data import faces
from toontalker_bench.data.scrape import TABLE_COLUMNS as SOURCE_COLUMNS
from toontalker_bench.data.shots import TABLE_COLUMNS, detect_shots, run
from toontalker_bench.core.errors import ConfigError, MediaError
from toontalker_bench.core.executors import LocalExecutor
from toontalker_bench.core.io import write_table

LENGTHS = (40, 55, 30, 45, 6)  # the last shot is shorter than min_shot_frames (15): dropped and counted


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[int]]]:
    d = tmp_path_factory.mktemp("shots_media")
    out = {"a": (d / "a.mp4", write_multishot(d / "a.mp4", LENGTHS, seed=1)),
           "b": (d / "b.mp4", write_multishot(d / "b.mp4", (70, 35, 50), size=(256, 144), seed=2)),
           "one": (d / "one.mp4", write_multishot(d / "one.mp4", (60,), seed=3))}
    truncate(d / "a.mp4", d / "broken.mp4", 0.6)
    truncate(remux_faststart(d / "a.mp4", d / "fast.mp4"), d / "cut_short.mp4", 0.6)
    return out


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cuts_found_within_two_frames(videos: dict[str, tuple[Path, list[int]]], detector: str) -> None:
    for name, (path, cuts) in videos.items():
        res = detect_shots(path, ShotsParams(detector=detector))
        found = [a for a, _ in res["shots"][1:]]
        expected = [c for c in cuts if c < sum(LENGTHS) - LENGTHS[-1]] if name == "a" else cuts
        assert len(found) == len(expected), (name, found, expected)
        assert all(abs(f - c) <= 2 for f, c in zip(found, expected)), (name, found, expected)
        starts_ends = [x for shot in res["shots"] for x in shot]
        assert starts_ends == sorted(starts_ends) and res["shots"][0][0] == 0
    assert detect_shots(videos["a"][0], ShotsParams(detector=detector))["dropped"] == 1


def _scenedetect_own(video: Path, p: ShotsParams) -> list[tuple[int, int]]:
    """The shots PySceneDetect finds running its own decoding (SceneManager over its PyAV stream), on the frames our
    finder sees (every ``step``-th sample of the YUV planes, converted at the small size), as the shots stage did
    before the faces stage found the cuts."""
    import cv2
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager
    from scenedetect.backends.pyav import VideoStreamAv

    class Small(VideoStreamAv):
        def __init__(self, step: int) -> None:
            super().__init__(str(video), suppress_output=True)
            w, h = super().frame_size
            self.step, self.small = step, (max(2, w // step // 2 * 2), max(2, h // step // 2 * 2))

        @property
        def frame_size(self) -> tuple[int, int]:
            return self.small

        def read(self, decode: bool = True):  # noqa: ANN202
            got = super().read(decode=False)
            if got is False or not decode:
                return got
            (w, h), st = self.small, self.step
            planes = [np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[::st, ::st] for pl in self._frame.planes]
            i420 = np.concatenate([planes[0][:h, :w].ravel(), planes[1][:h // 2, :w // 2].ravel(),
                                   planes[2][:h // 2, :w // 2].ravel()])
            return cv2.cvtColor(i420.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)

    import av

    with av.open(str(video)) as c:
        width = c.streams.video[0].codec_context.width
    det = (ContentDetector(threshold=p.threshold, min_scene_len=p.min_shot_frames) if p.detector == "content" else
           AdaptiveDetector(adaptive_threshold=p.adaptive_threshold, min_scene_len=p.min_shot_frames))
    sm = SceneManager()
    sm.add_detector(det)
    sm.auto_downscale, sm.downscale = False, 1
    sm.detect_scenes(Small(max(1, width // p.downscale_width)))
    return [(a.frame_num, b.frame_num) for a, b in sm.get_scene_list(start_in_scene=True)
            if b.frame_num - a.frame_num >= p.min_shot_frames]


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cut_finder_matches_scenedetects_own_decoding(videos: dict[str, tuple[Path, list[int]]], detector: str) -> None:
    p = ShotsParams(detector=detector)
    for path, _ in videos.values():
        assert detect_shots(path, p)["shots"] == _scenedetect_own(path, p)


def test_other_pixel_formats_take_the_generic_path(tmp_path: Path) -> None:
    """yuv444p frames are not subsampled from the planes but converted by PyAV; the cuts are the same."""
    import av

    lengths = (30, 40, 35)
    with av.open(str(tmp_path / "v444.mp4"), "w") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 330, 190, "yuv444p"
        for f in multishot_frames(lengths, size=(330, 190), seed=4):
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    res = detect_shots(tmp_path / "v444.mp4", ShotsParams(downscale_width=80))
    assert [a for a, _ in res["shots"]] == [0, 30, 70] and res["frames"] == sum(lengths)


def _sources(tmp_path: Path, videos: dict[str, tuple[Path, list[int]]]) -> Path:
    """A scrape table by hand: three good sources, one that scrape accepted but is corrupt, one failed row."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = []
    for sid, src in [("a", videos["a"][0]), ("b", videos["b"][0]), ("one", videos["one"][0]),
                     ("broken", videos["a"][0].parent / "broken.mp4"), ("dead", None)]:
        if src is not None:
            (raw / f"{sid}.mp4").write_bytes(src.read_bytes())
        row = {c: "" for c in SOURCE_COLUMNS} | {"source_id": sid, "domain": "cartoon", "status": "ok",
                                                  "path": f"{sid}.mp4", "start": float("nan"),
                                                  "end": float("nan"), "width": 0, "height": 0, "fps": 25.0,
                                                  "n_frames": 0}
        if src is None:
            row |= {"status": "failed", "reason": "HTTP Error 404", "path": ""}
        rows.append(row)
    write_table(raw / "sources.parquet", pd.DataFrame(rows))
    return raw


def _params(tmp_path: Path, raw: Path) -> Params:
    return Params(workers=1, scrape=ScrapeParams(out_dir=str(raw)), shots=ShotsParams(out_dir=str(tmp_path / "s")),
                  faces=FacesParams(out_dir=str(tmp_path / "f")))


def test_stage_table_report_failures_and_resume(tmp_path: Path, videos: dict[str, tuple[Path, list[int]]]) -> None:
    raw = _sources(tmp_path, videos)
    params = _params(tmp_path, raw)
    faces.run(params, LocalExecutor(1))  # finds the cuts while it looks for faces
    report = run(params, LocalExecutor(1))
    table = pd.read_parquet(tmp_path / "s" / "shots.parquet")
    assert tuple(table.columns) == TABLE_COLUMNS
    assert (report["sources"], report["ok"], report["failed"], report["sources_failed_in_scrape"]) == (4, 3, 1, 1)
    assert report["failures"][0]["source_id"] == "broken" and "broken" in report["failures"][0]["reason"]
    assert report["dropped_short_shots"] == 1
    assert list(table.groupby("source_id", sort=False).size().items()) == [("a", 4), ("b", 3), ("one", 1)]
    a = table[table.source_id == "a"]
    assert list(a.shot) == [0, 1, 2, 3] and (a.end_frame.iloc[:-1].values == a.start_frame.iloc[1:].values).all()
    assert a.start_s.tolist() == pytest.approx((a.start_frame / 25.0).tolist()) and (a.fps == 25.0).all()
    assert (table.end_frame - table.start_frame >= 15).all()
    assert report["frames"] == sum(LENGTHS) + 155 + 60
    rep_file = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep_file["shots"] == len(table) == 8
    # the same shots as detect_shots finds decoding each video on its own
    for sid in ("a", "b", "one"):
        alone = detect_shots(raw / f"{sid}.mp4", params.shots)
        assert [tuple(x) for x in table[table.source_id == sid][["start_frame", "end_frame"]].values] == alone["shots"]
    cuts = pd.read_parquet(tmp_path / "f" / "cuts.parquet")  # every shot the cut finder saw, the short one too
    assert cuts[~cuts.kept].values.tolist() == [["a", -1, 170, 176, False]]

    files = sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*"))
    # what a kill -9 part-way leaves: no table yet, one source unfinished, temporaries of atomic writes
    for f in ("shots.parquet", "report.json", ".parts/b.json"):
        (tmp_path / "s" / f).unlink()
    (tmp_path / "s" / ".shots.parquet.tmp-k1ll3d.parquet").write_bytes(b"half")
    (tmp_path / "s" / ".parts" / ".b.json.tmp-k1ll3d.json").write_bytes(b"{")
    again = run(params, LocalExecutor(1))
    assert again["skipped_done"] == 2 and pd.read_parquet(tmp_path / "s" / "shots.parquet").equals(table)
    assert sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*")) == files
    again = run(params, LocalExecutor(1))
    assert again["skipped_done"] == 3 and pd.read_parquet(tmp_path / "s" / "shots.parquet").equals(table)
    # new detector settings change the cuts the faces stage finds, and with them the sources' shot tables
    params.shots.min_shot_frames = 5
    assert faces.run(params, LocalExecutor(1))["sources_resumed"] == 0
    third = run(params, LocalExecutor(1))
    assert third["skipped_done"] == 2 and third["dropped_short_shots"] == 0 and third["shots"] == 9


def test_cli_verb_and_bad_config(tmp_path: Path, videos: dict[str, tuple[Path, list[int]]],
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _sources(tmp_path, videos)
    assert main(["data", "shots", "--set", "scrape.out_dir=raw", "--set", "shots.out_dir=s"]) == 2
    assert "data/faces/cuts.parquet" in capsys.readouterr().err  # the faces stage finds the cuts
    assert main(["data", "faces", "--workers", "2", "--set", "scrape.out_dir=raw"]) == 0
    assert main(["data", "shots", "--workers", "2", "--set", "scrape.out_dir=raw", "--set", "shots.out_dir=s"]) == 0
    assert len(pd.read_parquet(tmp_path / "s" / "shots.parquet")) == 8
    assert main(["data", "faces", "--set", "scrape.out_dir=raw", "--set", "shots.detector=magic"]) == 2
    assert "unknown shots.detector 'magic'" in capsys.readouterr().err
    assert main(["data", "shots", "--set", "scrape.out_dir=nowhere"]) == 2
    assert "sources.parquet" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        faces.run(Params(shots=ShotsParams(min_shot_frames=0)))
    with pytest.raises(ConfigError):
        detect_shots(videos["a"][0], ShotsParams(detector="magic"))
    with pytest.raises(MediaError):
        detect_shots(videos["a"][0].parent / "broken.mp4", ShotsParams())
    # the header of a cut-short faststart mp4 still lists every frame; decoding ends early and that is an error
    with pytest.raises(MediaError, match=r"cut_short.mp4.*(decoding stopped at frame \d+ of 176|at frame \d+)"):
        detect_shots(videos["a"][0].parent / "cut_short.mp4", ShotsParams())
