"""Re-render the frames of a demo-corpus clip with any motion.

The demo corpus is drawn by renderers that accept any 20-D motion (:class:`.render.CartoonShot`,
:class:`.realface3d.RealShot`), and the built dataset records the recipe that made it (``protocol/renderer.json``:
the seed, ``params.synth`` and the crop settings). So the exact answer to a reenactment pair is computable: the source
clip's identity, framed as in its source frame, moved by the driving clip's ground-truth motion relative to its
first frame. The ``oracle-render`` bracket outputs that answer, and the metric validation injects known errors into
it. A clip this cannot re-render (a scraped source, a dataset built from another recipe) raises
:class:`OracleUnavailable` with the reason.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import DatasetError
from ...faces.pose import N_MORPHS
from .recipe import RECIPE

SELF_CHECK_PSNR_DB = 30.0  # a re-rendered clip frame must match the decoded clip at least this well


class OracleUnavailable(DatasetError):
    """The dataset's clip cannot be re-rendered (the reason says why)."""


@dataclass
class ClipRenderer:
    """One clip: its ground-truth motion per clip frame, and :meth:`frame` to draw any clip frame with any motion."""

    clip_id: str
    motion: np.ndarray  # (T, 20) ground truth per clip frame
    _shots: list[tuple[Any, int]]  # per clip frame: (shot renderer, frame index within the shot)
    _crop: np.ndarray  # (T, 3) x0, y0, side in source-video pixels
    size: int
    pad: str

    def clamp(self, i: int, motion: np.ndarray) -> np.ndarray:
        """``motion`` limited to what the renderer can draw at clip frame ``i`` (morphs in [0, 1]; the real heads'
        head turns within their photo's supported range)."""
        return self._shots[i][0].clamp(motion)

    def frame(self, i: int, motion: np.ndarray) -> np.ndarray:
        """Clip frame ``i`` (its camera framing) drawn with ``motion`` (20,), cropped as the align stage crops:
        uint8 ``(size, size, 3)``."""
        from ..align import crop_square

        renderer, t = self._shots[i]
        img = renderer.frame(t, self.clamp(i, motion))[0]
        return crop_square(img, *(int(v) for v in self._crop[i]), self.size, self.pad)


def _read_recipe(root: Path) -> dict[str, Any]:
    path = root / RECIPE
    if not path.is_file():
        raise OracleUnavailable(f"{path} not found: this dataset records no demo-corpus recipe to re-render",
                                hint="rebuild the demo dataset with `dvc repro`")
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=64)
def clip_renderer(dataset_dir: str, clip_id: str) -> ClipRenderer:
    """The renderer of clip ``clip_id`` of the built dataset at ``dataset_dir`` (cached per process)."""
    from ...core.config import Params, from_dict
    from ..dataset import clip_table
    from .plan import plan
    from .render import shot_renderer

    root = Path(dataset_dir)
    rec = _read_recipe(root)
    table = clip_table(root).set_index("clip_id")
    if clip_id not in table.index:
        raise OracleUnavailable(f"clip {clip_id!r} is not in {root / 'clips.parquet'}")
    row = table.loc[clip_id]
    videos = {v.name: v for v in plan(from_dict(Params, {"seed": rec["seed"], "synth": rec["synth"]}))}
    video = videos.get(str(row["source_id"]))
    if video is None or video.copy_of:
        raise OracleUnavailable(f"clip {clip_id!r} comes from {row['source_id']!r}, which the demo renderer did not "
                                "draw (a scraped or copied video)")
    with np.load(root / Path(str(row["path"])).with_suffix(".npz")) as z:
        frames, crop, motion = z["frames"], z["crop"], np.asarray(z["motion"], np.float64)
    if not np.isfinite(motion).all():
        raise OracleUnavailable(f"clip {clip_id!r} has frames without ground-truth motion")
    starts = np.cumsum([0] + [s.n_frames for s in video.shots])
    renderers: dict[int, Any] = {}
    shots = []
    for f in frames:
        k = int(np.searchsorted(starts, f, side="right") - 1)
        if not 0 <= k < len(video.shots) or video.shots[k].kind not in ("cartoon", "photo"):
            raise OracleUnavailable(f"clip {clip_id!r} frame {f} is not in a face shot of {video.name}")
        if k not in renderers:
            renderers[k] = shot_renderer(video, video.shots[k], rec["seed"])
        shots.append((renderers[k], int(f - starts[k])))
    return ClipRenderer(clip_id, motion, shots, crop, int(rec["align"]["size"]), str(rec["align"]["pad"]))


def relative_motion(source: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """The relative-motion answer: the source's pose vector plus the driving motion's change since its first frame
    (morphs and angles alike; the renderer clamps what it cannot draw)."""
    out = source[None] + (driving - driving[:1])
    out[:, :N_MORPHS] = np.clip(out[:, :N_MORPHS], 0, 1)
    return out


def answer(dataset_dir: str | Path, source_clip: str, source_frame: int, driving_clip: str, driving_start: int,
           n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact relative-motion answer to a protocol pair: frames uint8 ``(n, S, S, 3)`` and the motion drawn."""
    src = clip_renderer(str(dataset_dir), source_clip)
    drv = clip_renderer(str(dataset_dir), driving_clip)
    motion = relative_motion(src.motion[source_frame], drv.motion[driving_start:driving_start + n_frames])
    motion = src.clamp(source_frame, motion)
    return np.stack([src.frame(source_frame, m) for m in motion]), motion


def self_check(dataset_dir: str | Path, clip_id: str, index: int = 0) -> float:
    """PSNR (dB) of clip frame ``index`` re-rendered with its own ground truth against the decoded clip frame; raises
    :class:`OracleUnavailable` below :data:`SELF_CHECK_PSNR_DB` (the dataset was not built from this recipe)."""
    from ...core.video import read_frames
    from ..dataset import clip_table

    root = Path(dataset_dir)
    r = clip_renderer(str(root), clip_id)
    path = clip_table(root).set_index("clip_id").loc[clip_id, "path"]
    decoded = read_frames(root / str(path), index, index + 1)[0].astype(np.float64)
    mse = float(((r.frame(index, r.motion[index]).astype(np.float64) - decoded) ** 2).mean())
    psnr = 10 * np.log10(255.0**2 / max(mse, 1e-12))
    if psnr < SELF_CHECK_PSNR_DB:
        raise OracleUnavailable(f"clip {clip_id!r} re-rendered from the recorded recipe matches its video at only "
                                f"{psnr:.1f} dB (< {SELF_CHECK_PSNR_DB:g})",
                                hint="the dataset was built from other synth params; rebuild it with `dvc repro`")
    return psnr
