"""The corpus check: MediaPipe's Face Landmarker (an instrument nobody here trained) reads the real heads' expressions,
and `data check-corpus` turns its readings into per-channel r and the dataset card's section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toontalker_bench.core.video import write_video
from toontalker_bench.data.corpus_check import card_lines, check_corpus
from toontalker_bench.data.synth.realface3d import RealHead
from toontalker_bench.faces.mediapipe import FaceLandmarker
from toontalker_bench.faces.pose import MORPHS

MI = {n: i for i, n in enumerate(MORPHS)}
SIZE = (256, 256)


def frame(head: RealHead, yaw: float = 0.0, **morphs: float) -> np.ndarray:
    m = np.zeros(20)
    for k, v in morphs.items():
        m[MI[k]] = v
    m[17:] = head.pose0 + [yaw, 0.0, 0.0]
    return head.render(m, SIZE, head.framing(SIZE, face_px=0.45 * SIZE[1]))[0]


@pytest.fixture(scope="module")
def landmarker():  # noqa: ANN201 - FaceLandmarker
    with FaceLandmarker() as lmk:
        yield lmk


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper", "carphone_a"])
@pytest.mark.parametrize("yaw", [-15.0, 15.0])
def test_the_instrument_sees_blinks_and_the_jaw_of_the_real_heads(landmarker, name: str, yaw: float) -> None:  # noqa: ANN001
    head = RealHead.from_photo(name)
    read = lambda **m: landmarker.read(frame(head, yaw, **m))  # noqa: E731
    rest, shut = read(), read(blink_left=1.0, blink_right=1.0)
    assert rest.found and shut.found
    # (Grace Hopper's glasses hide half of it: 0.28 at -15 degrees of yaw, 0.4-0.7 for the others)
    assert rest.channel("blink") < 0.15 and shut.channel("blink") - rest.channel("blink") > 0.2, \
        (rest.channel("blink"), shut.channel("blink"))
    jaw = [read(mouth_open=v).channel("mouth_open") for v in (0.0, 0.5, 1.0)]
    assert min(jaw[1:]) - jaw[0] > 0.04 and jaw[2] - jaw[0] > 0.1, jaw  # it saturates between half and full


@pytest.mark.parametrize("name", ["grace_hopper", "carphone_a"])  # not the astronaut: her photo already smiles
def test_the_instrument_sees_the_smile_of_the_real_heads(landmarker, name: str) -> None:  # noqa: ANN001
    head = RealHead.from_photo(name)
    rest, smile = (landmarker.read(frame(head, 10.0, **m)).channel("smile") for m in ({}, {"smile": 1.0}))
    assert smile - rest > 0.5, (rest, smile)


def _clips(root: Path) -> Path:
    """Two short real-head clips with blinks and mouth movements, in the align stage's layout."""
    rng = np.random.default_rng(0)
    rows = []
    root.mkdir(parents=True)
    for i, name in enumerate(("astronaut", "grace_hopper")):
        head = RealHead.from_photo(name)
        n = 12
        motion = np.zeros((n, 20))
        motion[:, MI["blink_left"]] = motion[:, MI["blink_right"]] = (np.arange(n) % 4 == 2).astype(float)
        motion[:, MI["mouth_open"]] = rng.uniform(0, 0.8, n) * (np.arange(n) % 3 != 0)
        motion[:, MI["smile"]] = np.linspace(0, 1, n)
        motion[:, 17:] = head.pose0
        frames = [head.render(m, SIZE, head.framing(SIZE, face_px=0.45 * SIZE[1]))[0] for m in motion]
        cid = f"real_{i:03d}-s000-t00"
        write_video(root / f"{cid}.mp4", frames)
        np.savez(root / f"{cid}.npz", motion=motion.astype(np.float32))
        rows.append({"clip_id": cid, "domain": "real", "identity": f"real_{name}", "path": f"{cid}.mp4"})
    pd.DataFrame(rows).to_parquet(root / "clips.parquet")
    return root


def test_check_corpus_writes_r_per_channel_and_the_card_quotes_only_a_check_of_these_clips(tmp_path: Path) -> None:
    clips = _clips(tmp_path / "clips")
    res = check_corpus(clips, tmp_path / "dataset", tmp_path / "check.json", tmp_path / "check.png", every=1)
    summary = json.loads((tmp_path / "check.json").read_text())
    assert summary == res.summary and summary["instrument"].startswith("mediapipe-face-landmarker:64184e229b26")
    assert summary["frames"] == {"real": 24} and summary["detection_rate"] == {"real": 1.0}
    r = summary["r"]["real"]
    assert r["blink"] > 0.8 and r["mouth_open"] > 0.5, r
    assert (tmp_path / "check.png").stat().st_size > 10_000
    version = summary["clips_version"]
    card = "\n".join(card_lines(tmp_path / "check.json", version))
    assert "| real |" in card and f"{r['blink']:.2f} (target 0.8)" in card
    assert ("Below target: none." in card) == (not summary["missed"])
    other = "\n".join(card_lines(tmp_path / "check.json", "dvc:another"))
    assert "have not been checked" in other and "| real |" not in other
