"""Shot cuts: real PySceneDetect on generated multi-shot videos with known cuts, found by the cut finder fed one
frame at a time, and the cut list the tubes stage writes from its decoding pass (``cuts.parquet``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_media import multishot_frames, remux_faststart, truncate, write_multishot

from toontalker_bench.cli import main
from toontalker_bench.core.config import CutsParams, Params, ScrapeParams, TubesParams
from toontalker_bench.core.errors import ConfigError
from toontalker_bench.core.executors import LocalExecutor
from toontalker_bench.core.io import write_table
from toontalker_bench.core.video import decode
from toontalker_bench.data import tubes
from toontalker_bench.data.cuts import CutFinder, shots_from_cuts
from toontalker_bench.data.scrape import TABLE_COLUMNS as SOURCE_COLUMNS

LENGTHS = (40, 55, 30, 45, 6)  # the last shot is shorter than min_shot_frames (15): dropped and counted


def _find_shots(video: Path, p: CutsParams) -> dict:
    """The cut finder over a whole video, decoded here: ``shots`` at least ``min_shot_frames`` long, the number of
    shorter ones ``dropped``, and ``frames``."""
    finder, cuts, frames = None, [], 0
    for fr in decode(video):
        finder = finder or CutFinder(p, fr.width, fr.rate)
        cuts += finder.push(fr)
        frames += 1
    cuts += finder.finish()
    shots = shots_from_cuts(cuts, 0, frames)
    kept = [(a, b) for a, b in shots if b - a >= p.min_shot_frames]
    return {"shots": kept, "dropped": len(shots) - len(kept), "frames": frames}


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
        res = _find_shots(path, CutsParams(detector=detector))
        found = [a for a, _ in res["shots"][1:]]
        expected = [c for c in cuts if c < sum(LENGTHS) - LENGTHS[-1]] if name == "a" else cuts
        assert len(found) == len(expected), (name, found, expected)
        assert all(abs(f - c) <= 2 for f, c in zip(found, expected)), (name, found, expected)
        starts_ends = [x for shot in res["shots"] for x in shot]
        assert starts_ends == sorted(starts_ends) and res["shots"][0][0] == 0
    assert _find_shots(videos["a"][0], CutsParams(detector=detector))["dropped"] == 1


def _scenedetect_own(video: Path, p: CutsParams) -> list[tuple[int, int]]:
    """The shots PySceneDetect finds running its own decoding (SceneManager over its PyAV stream), on the frames our
    finder sees (every ``step``-th sample of the YUV planes, converted at the small size), as the cut finder did
    before the tubes stage fed it its own decoded frames."""
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
    p = CutsParams(detector=detector)
    for path, _ in videos.values():
        assert _find_shots(path, p)["shots"] == _scenedetect_own(path, p)


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
    res = _find_shots(tmp_path / "v444.mp4", CutsParams(downscale_width=80))
    assert [a for a, _ in res["shots"]] == [0, 30, 70] and res["frames"] == sum(lengths)


def _sources(tmp_path: Path, videos: dict[str, tuple[Path, list[int]]]) -> Path:
    """A scrape table by hand: three good sources, two that scrape accepted but are corrupt (one cut short behind a
    header that lists every frame), one failed row."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = []
    for sid, src in [("a", videos["a"][0]), ("b", videos["b"][0]), ("one", videos["one"][0]),
                     ("broken", videos["a"][0].parent / "broken.mp4"),
                     ("cut", videos["a"][0].parent / "cut_short.mp4"), ("dead", None)]:
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
    return Params(workers=1, scrape=ScrapeParams(out_dir=str(raw)), tubes=TubesParams(out_dir=str(tmp_path / "t")))


def test_tubes_stage_cut_list_report_and_failures(tmp_path: Path, videos: dict[str, tuple[Path, list[int]]]) -> None:
    raw = _sources(tmp_path, videos)
    params = _params(tmp_path, raw)
    report = tubes.run(params, LocalExecutor(1))  # finds the cuts while it looks for faces
    cuts = pd.read_parquet(tmp_path / "t" / "cuts.parquet")
    assert list(cuts.columns) == ["source_id", "shot", "start_frame", "end_frame", "kept"]
    kept = cuts[cuts.kept]
    assert list(kept.groupby("source_id", sort=False).size().items()) == [("a", 4), ("b", 3), ("one", 1)]
    a = kept[kept.source_id == "a"]
    assert list(a.shot) == [0, 1, 2, 3] and (a.end_frame.iloc[:-1].values == a.start_frame.iloc[1:].values).all()
    # every shot the finder saw, the short one too (not tracked, numbered -1)
    assert cuts[~cuts.kept].values.tolist() == [["a", -1, 170, 176, False]]
    # the same shots as the cut finder finds over each video decoded on its own
    for sid in ("a", "b", "one"):
        alone = _find_shots(raw / f"{sid}.mp4", params.cuts)
        assert [tuple(x) for x in kept[kept.source_id == sid][["start_frame", "end_frame"]].values] == alone["shots"]
    assert (report["shots"], report["dropped_short_shots"]) == (8, 1)
    assert report["frames_decoded"] == sum(LENGTHS) + 155 + 60
    rejects = pd.read_parquet(tmp_path / "t" / "rejects.parquet")
    failed = rejects[rejects.shot == -1].set_index("source_id")
    assert failed.reason.to_dict() == {"broken": "source_error", "cut": "source_error", "dead": "source_failed"}
    assert "broken" in failed.detail["broken"] and failed.detail["dead"] == "HTTP Error 404"
    # decoding ends early (PyAV stops quietly, or reports the bad packet): either way an error naming the frame
    assert re.search(r"corrupt video .*cut\.mp4.*(decoding stopped at frame \d+ of 176|at frame \d+)",
                     failed.detail["cut"])
    # new cut settings change the cuts, so every source runs again: the short shot is kept now
    params.cuts.min_shot_frames = 5
    again = tubes.run(params, LocalExecutor(1))
    assert (again["sources_resumed"], again["shots"], again["dropped_short_shots"]) == (0, 9, 0)


def test_cli_verb_and_bad_config(tmp_path: Path, videos: dict[str, tuple[Path, list[int]]],
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _sources(tmp_path, videos)
    assert main(["data", "tubes", "--set", "scrape.out_dir=raw", "--set", "cuts.detector=magic"]) == 2
    assert "unknown cuts.detector 'magic'" in capsys.readouterr().err
    assert main(["data", "tubes", "--set", "scrape.out_dir=nowhere"]) == 2
    assert "sources.parquet" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="cuts.min_shot_frames"):
        tubes.run(Params(cuts=CutsParams(min_shot_frames=0)))
    with pytest.raises(ConfigError, match="cuts.detector"):
        CutFinder(CutsParams(detector="magic"), 320, 25.0)
