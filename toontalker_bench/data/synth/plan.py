"""What the demo corpus holds: videos and their shots, fully determined by the seed and ``params.synth``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.config import Params, SynthParams
from ...core.errors import ConfigError

RENDER_VERSION = "7"  # bump when rendering changes, so finished videos are regenerated


@dataclass(frozen=True)
class Shot:
    kind: str  # cartoon | photo | empty
    n_frames: int
    identity: str  # "" when no face
    source: str  # cartoon character index or photo/scene name
    seed: tuple[int, ...]


@dataclass(frozen=True)
class Video:
    name: str
    domain: str  # cartoon | real
    width: int
    height: int
    fps: float
    shots: tuple[Shot, ...]
    copy_of: str = ""  # an unmodified clip copied from an installed package

    def key(self) -> str:
        """Hash of everything that determines the output bytes."""
        spec = {**asdict(self), "copy_of": Path(self.copy_of).name}  # not the install location: same hash everywhere
        if self.domain == "real" and not self.copy_of:
            from .realface3d import HEAD_VERSION

            spec["head"] = HEAD_VERSION
        blob = json.dumps({"v": RENDER_VERSION, **spec}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def plan(params: Params) -> list[Video]:
    """The videos of the corpus, fully determined by ``params.seed`` and ``params.synth``."""
    sp = params.synth
    _validate(sp)
    from .realface import CARPHONE, SCENES
    from .realface3d import usable_photos

    photos = usable_photos()[0]  # photos whose face cannot be fitted are left out (the report says why)

    seed = params.seed
    rng = np.random.default_rng([seed, 1])
    videos: list[Video] = []
    for domain, n_videos in (("cartoon", sp.cartoon_videos), ("real", sp.real_videos)):
        n_shots = n_videos * sp.shots_per_video
        n_empty = min(int(round(sp.no_face_shot_prob * n_shots)), n_videos)
        empty = {(int(v), int(rng.integers(sp.shots_per_video))) for v in rng.permutation(n_videos)[:n_empty]}
        pool = list(range(sp.cartoon_identities)) if domain == "cartoon" else list(photos)
        order: list[Any] = []
        for vi in range(n_videos):
            shots = []
            for si in range(sp.shots_per_video):
                n_frames = int(round(rng.uniform(*sp.shot_seconds) * sp.fps))
                sseed = (seed, 2, len(videos), si)
                if (vi, si) in empty:
                    k = int(rng.integers(1 << 16))
                    src = f"scene{k}" if domain == "cartoon" else SCENES[k % len(SCENES)]
                    shots.append(Shot("empty", n_frames, "", src, sseed))
                    continue
                if not order:
                    order = [pool[int(j)] for j in rng.permutation(len(pool))]
                who = order.pop(0)
                if domain == "cartoon":
                    shots.append(Shot("cartoon", n_frames, f"cartoon_{who:02d}", str(who), sseed))
                else:
                    shots.append(Shot("photo", n_frames, photos[who].identity, who, sseed))
            videos.append(Video(f"{domain}_{vi:03d}", domain, sp.width, sp.height, sp.fps, tuple(shots)))
    if sp.include_carphone:
        from .realface import carphone_path

        videos.append(Video("real_carphone", "real", 176, 144, 30000 / 1001,
                            (Shot("clip", 0, CARPHONE.identity, "carphone", (seed,)),), copy_of=str(carphone_path())))
    return videos


def _validate(sp: SynthParams) -> None:
    if sp.width % 2 or sp.height % 2 or sp.width < 64 or sp.height < 64:
        raise ConfigError(f"synth.width/height must be even and >= 64, got {sp.width}x{sp.height}")
    lo, hi = sp.shot_seconds
    if not 0 < lo <= hi:
        raise ConfigError(f"synth.shot_seconds must be 0 < min <= max, got {sp.shot_seconds}")
    if min(sp.cartoon_videos, sp.real_videos, sp.shots_per_video) < 0 or sp.cartoon_identities < 1:
        raise ConfigError("synth video/shot/identity counts must be >= 0 (identities >= 1)")
    if not 0 <= sp.no_face_shot_prob <= 1 or sp.fps <= 0:
        raise ConfigError("synth.no_face_shot_prob must lie in [0, 1] and synth.fps be > 0")
