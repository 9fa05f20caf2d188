"""Stage 2, shots: split every fetched source into shots with PySceneDetect -> ``data/shots/shots.parquet``.

Each source is decoded once through PySceneDetect's PyAV backend; the detectors see frames subsampled to about
``shots.downscale_width`` pixels wide, taken straight from the decoded YUV planes (they only need coarse HSV
statistics, and full-size colour conversion would cost as much as decoding). Shots shorter than
``shots.min_shot_frames`` (including zero-length ones) are dropped and counted; a source that cannot be decoded is a
recorded failure and the stage goes on. Per-source results are part records (:mod:`.stage`), so a rerun only
processes sources that changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Params, ShotsParams, to_dict, view
from ..errors import ConfigError, MediaError
from ..executors import Executor
from ..io import read_table, sha256_file, write_table
from ..video import probe
from .stage import Job, Stage

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape.out_dir", "shots")

TABLE_COLUMNS = ("source_id", "shot", "start_frame", "end_frame", "start_s", "end_s", "fps")
DETECTORS = ("content", "adaptive")


def open_subsampled(video: str | Path, step: int):  # noqa: ANN201 - a scenedetect VideoStream
    """PySceneDetect's PyAV stream handing out frames subsampled ``step`` times in each direction.

    The frames are taken straight from the decoded YUV planes (every ``step``-th sample) and converted to BGR at the
    small size. Converting every full frame to BGR and then resizing (what ``SceneManager.downscale`` does) costs as
    much as decoding; this costs about a sixth of it, and hard cuts look the same at 160 pixels either way.
    """
    import cv2
    import numpy as np
    from scenedetect.backends.pyav import VideoStreamAv

    class SubsampledStream(VideoStreamAv):
        def __init__(self) -> None:
            super().__init__(str(video), suppress_output=True)
            w, h = super().frame_size
            self._small = (max(2, w // step // 2 * 2), max(2, h // step // 2 * 2))

        @property
        def frame_size(self) -> tuple[int, int]:
            return self._small

        def read(self, decode: bool = True) -> np.ndarray | bool:
            got = super().read(decode=False)
            if got is False or not decode:
                return got
            frame = self._frame
            w, h = self._small
            if frame.format.name != "yuv420p":
                return frame.to_ndarray(format="bgr24", width=w, height=h)

            def plane(i: int, rows: int, cols: int) -> np.ndarray:
                pl = frame.planes[i]
                return np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[::step, ::step][:rows, :cols]

            i420 = np.concatenate([plane(0, h, w).ravel(), plane(1, h // 2, w // 2).ravel(),
                                   plane(2, h // 2, w // 2).ravel()])
            return cv2.cvtColor(i420.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)

    return SubsampledStream()


def detect_shots(video: str | Path, p: ShotsParams) -> dict[str, Any]:
    """Run PySceneDetect on one video. Returns ``shots`` [(start, end_exclusive)], ``dropped``, ``fps``, ``frames``."""
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager

    info = probe(video)  # MediaError for a truncated / non-video file, before PySceneDetect's OpenCV fallback
    try:
        stream = open_subsampled(video, max(1, info.width // max(1, p.downscale_width)))
    except Exception as e:  # noqa: BLE001 - scenedetect raises its own VideoOpenFailure / OSError types
        raise MediaError(f"cannot open video {video}: {e}") from e
    if p.detector == "content":
        detector = ContentDetector(threshold=p.threshold, min_scene_len=p.min_shot_frames)
    else:
        detector = AdaptiveDetector(adaptive_threshold=p.adaptive_threshold, min_scene_len=p.min_shot_frames)
    manager = SceneManager()
    manager.add_detector(detector)
    manager.auto_downscale = False
    manager.downscale = 1  # the stream already hands out small frames
    try:
        frames = manager.detect_scenes(stream)
    except Exception as e:  # noqa: BLE001 - a decode error part-way
        raise MediaError(f"corrupt video {video} during shot detection: {type(e).__name__}: {e}") from e
    if frames < info.n_frames * 0.99 - 1:  # PySceneDetect stops quietly at a truncated file's end of data
        raise MediaError(f"corrupt video {video}: decoding stopped at frame {frames} of {info.n_frames}")
    scenes = manager.get_scene_list(start_in_scene=True)
    shots, dropped = [], 0
    for start, end in scenes:
        a, b = int(start.frame_num), int(end.frame_num)
        if b - a < max(1, p.min_shot_frames):
            dropped += 1
        else:
            shots.append((a, b))
    return {"shots": shots, "dropped": dropped, "fps": info.fps, "frames": int(frames)}


def _process(job: tuple[str, ShotsParams]) -> dict[str, Any]:
    """The part record of one source: its shots, the short shots dropped, fps and frames decoded."""
    video, p = job
    return detect_shots(video, p)


def _key(video: Path, p: ShotsParams) -> str:
    """Names a source's inputs by content (not mtime), so a re-fetched identical video keeps its part."""
    blob = json.dumps([video.name, sha256_file(video), to_dict(p) | {"out_dir": None}], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Detect shots in every ``ok`` source of ``data/raw/sources.parquet``; returns the report."""
    params = view(params, READS)
    p = params.shots
    if p.detector not in DETECTORS:
        raise ConfigError(f"unknown shots.detector {p.detector!r}", hint="use content or adaptive")
    if p.min_shot_frames < 1 or p.downscale_width < 1:
        raise ConfigError("shots.min_shot_frames and shots.downscale_width must be >= 1")
    raw = Path(params.scrape.out_dir)
    sources = read_table(raw / "sources.parquet", "scrape table (sources.parquet)")
    ok = sources[sources.status == "ok"]
    stage = Stage("shots", p.out_dir, params, executor)
    jobs: list[Job] = []
    failures: dict[str, str] = {}
    for r in ok.itertuples():
        video = raw / r.path
        try:
            jobs.append(Job(r.source_id, _key(video, p), (str(video), p)))
        except OSError:
            failures[r.source_id] = f"video missing: {video}"
    done = stage.run_jobs(jobs, _process, desc="shots")
    failures |= done.failures
    rows = []
    for sid in ok.source_id:  # source order of the scrape table, shots in time order: deterministic
        res = done.parts.get(sid)
        for i, (a, b) in enumerate(res["shots"] if res else ()):
            fps = float(res["fps"])
            rows.append((sid, i, a, b, a / fps, b / fps, fps))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(
        {"shot": "int64", "start_frame": "int64", "end_frame": "int64", "start_s": "float64", "end_s": "float64",
         "fps": "float64"})
    write_table(stage.out / "shots.parquet", table)
    parts = done.parts.values()
    frames = sum(r["frames"] for r in parts)
    report = {
        "stage": "shots",
        "detector": p.detector,
        "sources": len(ok),
        "sources_failed_in_scrape": int((sources.status != "ok").sum()),
        "ok": len(done.parts),
        "failed": len(failures),
        "shots": len(table),
        "dropped_short_shots": int(sum(r["dropped"] for r in parts)),
        "frames": int(frames),
        "failures": [{"source_id": k, "reason": failures[k]} for k in sorted(failures)],
    }
    res = stage.finish(report, {"skipped_done": done.resumed,
                                "frames_per_s_per_worker": done.rate(lambda part: part["frames"])})
    log.info("shots: %d shots in %d/%d sources (%d already done, %d failed, %d short shots dropped), "
             "%d frames at %s frames/s per worker, %.1fs -> %s", len(table), len(done.parts), len(ok), done.resumed,
             len(failures), report["dropped_short_shots"], frames, res["frames_per_s_per_worker"],
             res["wall_seconds"], stage.out / "shots.parquet")
    return res
