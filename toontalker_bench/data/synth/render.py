"""Render one demo video and its per-frame ground truth (``<name>.mp4`` + ``<name>.gt.parquet``)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...core.io import atomic_path
from ...faces.pose import N_MORPHS, POSE_DIM
from .background import background
from .motion import smooth_noise, talking_motion
from .plan import Shot, Video

HASH_KEY = b"toontalker.synth_hash"


def character(seed: int, index: int):  # noqa: ANN201 - cartoon.Character
    """Identity ``index``'s appearance: depends only on the seed and the index, so it is the same in every video."""
    from .cartoon import make_character

    return make_character(np.random.default_rng([seed, 7, index]), f"cartoon_{index:02d}")


class CartoonShot:
    """One cartoon face shot: its ground-truth motion and a renderer for frame ``t`` with any motion (the oracle
    uses the second). The random draws happen in the order the corpus was always generated in."""

    def __init__(self, shot: Shot, seed: int, w: int, h: int, fps: float) -> None:
        rng = np.random.default_rng(list(shot.seed))
        self.character = character(seed, int(shot.source))
        self.bg = background(rng, h, w)
        self.motion = talking_motion(rng, shot.n_frames, fps)
        self.scale = rng.uniform(0.22, 0.29) * h
        cx0, cy0 = rng.uniform(0.32, 0.68) * w, rng.uniform(0.44, 0.5) * h
        dx, dy = smooth_noise(rng, shot.n_frames, fps), smooth_noise(rng, shot.n_frames, fps)
        self.centres = np.stack([cx0 + 0.012 * w * dx, cy0 + 0.008 * h * dy], 1)

    def clamp(self, motion: np.ndarray) -> np.ndarray:
        m = np.array(motion, np.float64, copy=True)
        m[..., :N_MORPHS] = np.clip(m[..., :N_MORPHS], 0, 1)
        return m

    def frame(self, t: int, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``t`` (its camera position) drawn with ``motion`` (20,): uint8 image, 68 landmarks, face box."""
        from .cartoon import render

        img, lm, box = render(self.character, motion, self.bg.copy(), tuple(self.centres[t]), self.scale)
        return (img * 255 + 0.5).astype(np.uint8), lm, box


def shot_renderer(video: Video, shot: Shot, seed: int):  # noqa: ANN201 - CartoonShot | realface3d.RealShot
    """The renderer of a face shot (``motion``, ``clamp(motion)``, ``frame(t, motion)``)."""
    if video.domain == "cartoon":
        return CartoonShot(shot, seed, video.width, video.height, video.fps)
    from .realface3d import RealShot

    return RealShot(shot, video.width, video.height, video.fps)


def _shot_frames(video: Video, shot: Shot, seed: int):  # noqa: ANN202 - generator
    """``(frame, landmarks | None, box | None, motion | None)`` for every frame of a shot."""
    if shot.kind in ("cartoon", "photo"):
        r = shot_renderer(video, shot, seed)
        for t in range(shot.n_frames):
            yield *r.frame(t, r.motion[t]), r.motion[t]
    elif video.domain == "cartoon":  # a cartoon shot without a face
        bg = background(np.random.default_rng(list(shot.seed)), video.height, video.width, landscape=True)
        frame = (bg * 255 + 0.5).astype(np.uint8)
        for _ in range(shot.n_frames):
            yield frame, None, None, None
    else:
        from .realface import render_shot

        yield from render_shot(shot, video.width, video.height, video.fps)


def render_video(job: tuple[Video, str, int]) -> dict[str, Any]:
    """Write one video and its ground truth (worker function; the GT is written last and marks completion)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ...core.video import write_video

    video, out_dir, seed = job
    out = Path(out_dir)
    mp4, gt = out / f"{video.name}.mp4", out / f"{video.name}.gt.parquet"
    cols: dict[str, list[Any]] = {k: [] for k in ("frame", "shot", "identity", "domain", "has_face", "box_x0", "box_y0",
                                                  "box_x1", "box_y1", "landmarks", "motion")}
    nan68, nan20, nan4 = [math.nan] * 136, [math.nan] * POSE_DIM, [math.nan] * 4

    def add(frame: int, shot: int, identity: str, has_face: bool, box, lm, motion) -> None:  # noqa: ANN001
        b = nan4 if box is None else [float(v) for v in box]
        cols["frame"].append(frame)
        cols["shot"].append(shot)
        cols["identity"].append(identity)
        cols["domain"].append(video.domain)
        cols["has_face"].append(has_face)
        for k, v in zip(("box_x0", "box_y0", "box_x1", "box_y1"), b):
            cols[k].append(v)
        cols["landmarks"].append(nan68 if lm is None else [float(v) for v in np.asarray(lm, np.float64).reshape(-1)])
        cols["motion"].append(nan20 if motion is None else [float(v) for v in motion])

    if video.copy_of:
        from ...core.video import probe

        with atomic_path(mp4) as tmp:
            shutil.copyfile(video.copy_of, tmp)
        info = probe(mp4)
        for f in range(info.n_frames):
            add(f, 0, video.shots[0].identity, True, None, None, None)
        n, fps = info.n_frames, info.fps
    else:
        def frames():  # noqa: ANN202 - records the GT row of each frame as it is encoded
            for si, shot in enumerate(video.shots):
                for img, lm, box, motion in _shot_frames(video, shot, seed):
                    add(len(cols["frame"]), si, shot.identity, lm is not None, box, lm, motion)
                    yield img

        # write_video pins the encoder to one thread: x264's output depends on its thread count
        n, fps = write_video(mp4, frames(), fps=video.fps, crf=20), video.fps
    schema = pa.schema([("frame", pa.int64()), ("shot", pa.int32()), ("identity", pa.string()), ("domain", pa.string()),
                        ("has_face", pa.bool_()), ("box_x0", pa.float64()), ("box_y0", pa.float64()),
                        ("box_x1", pa.float64()), ("box_y1", pa.float64()), ("landmarks", pa.list_(pa.float64())),
                        ("motion", pa.list_(pa.float64()))], metadata={HASH_KEY: video.key().encode()})
    table = pa.Table.from_pydict(cols, schema=schema)
    with atomic_path(gt) as tmp:
        pq.write_table(table, tmp)
    ids = sorted({s.identity for s in video.shots if s.identity})
    return {"name": video.name, "frames": n, "seconds": n / fps, "identities": ids}
