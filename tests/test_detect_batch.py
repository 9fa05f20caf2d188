"""Batched detection (``Detector.detect_many``, used by the faces stage) equals one-by-one detection exactly."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from toontalker_bench.faces.detect import get_detector


def _frames() -> list[np.ndarray]:
    """The astronaut photo at four places on a 640x360 canvas, and one blank frame."""
    face = data.astronaut()[::2, ::2]  # 256 px
    out = []
    for x in (0, 120, 250, 384):
        f = np.full((360, 640, 3), 90, np.uint8)
        f[50:306, x:x + 256] = face
        out.append(f)
    out.insert(2, np.full((360, 640, 3), 128, np.uint8))
    return out


@pytest.mark.parametrize(("name", "max_side"), [("retinaface", 320), ("retinaface", 0), ("dlib-hog", 0)])
def test_detect_many_equals_one_by_one(name: str, max_side: int) -> None:
    det = get_detector(name, max_side=max_side)
    frames = _frames()
    batched = det.detect_many(frames)
    single = [det.detect(f) for f in frames]
    assert [len(d) for d in batched] == [len(d) for d in single]
    assert sum(len(d) for d in single) >= 4 and single[2] == []  # the face is found; the blank frame has none
    for b, s in zip(batched, single):
        for db, ds in zip(b, s):
            assert db.score == ds.score
            np.testing.assert_array_equal(db.box, ds.box)
            if ds.landmarks5 is not None:
                np.testing.assert_array_equal(db.landmarks5, ds.landmarks5)


def test_detect_many_mixed_sizes() -> None:
    det = get_detector("retinaface")
    frames = [_frames()[0], np.ascontiguousarray(_frames()[1][:240, :320])]
    batched = det.detect_many(frames)
    for b, f in zip(batched, frames):
        s = det.detect(f)
        assert [d.score for d in b] == [d.score for d in s]
