"""Face detectors and landmarks on real photos that ship inside installed packages, and on a drawn cartoon face.

Reference face locations were measured by eye on each image overlaid with a 50 px grid (independent of any detector):
the eye centres, the mouth corners, and the face width from cheek to cheek.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from toontalker_bench.faces.detect import get_detector
from toontalker_bench.faces.landmarks import five_from_68, get_landmarker


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook as cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


# name -> (loader, eyes (image-left, image-right), mouth corners, face width), all measured by eye in pixels
FACES = {
    "astronaut": (_astronaut, [(205, 100), (245, 100)], [(205, 140), (245, 140)], 85),
    "grace_hopper": (_grace_hopper, [(225, 190), (300, 190)], [(232, 278), (300, 278)], 170),
}


@pytest.fixture(scope="module", autouse=True)
def _asset_home(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN202
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOONTALKER_HOME", str(tmp_path_factory.mktemp("assets-home")))
        yield


def _inner_region(face: str) -> np.ndarray:
    _, eyes, mouth, _ = FACES[face]
    pts = np.array(eyes + mouth, float)
    return np.r_[pts.min(0) - 10, pts.max(0) + 10]  # eyes-to-mouth rectangle with a 10 px margin


@pytest.mark.parametrize("face", sorted(FACES))
@pytest.mark.parametrize("detector", ["retinaface", "dlib-hog", "dlib-cnn"])
def test_detector_finds_the_real_face(detector: str, face: str) -> None:
    img = FACES[face][0]()
    dets = get_detector(detector).detect(img)
    assert dets, f"{detector} found no face in {face}"
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    box = dets[0].box
    assert box.shape == (4,) and box.dtype == np.float32
    x0, y0, x1, y1 = _inner_region(face)
    assert box[0] <= x0 and box[1] <= y0 and box[2] >= x1 and box[3] >= y1, (box, (x0, y0, x1, y1))
    width_ratio = (box[2] - box[0]) / FACES[face][3]
    assert 0.7 <= width_ratio <= 1.6, width_ratio


@pytest.mark.parametrize("face", sorted(FACES))
def test_retinaface_landmarks5_are_eyes_nose_mouth_in_image_order(face: str) -> None:
    _, eyes, mouth, width = FACES[face]
    l5 = get_detector("retinaface").detect(FACES[face][0]())[0].landmarks5
    assert l5 is not None and l5.shape == (5, 2)
    tol = 0.12 * width
    np.testing.assert_allclose(l5[[0, 1, 3, 4]], np.array(eyes + mouth, np.float32), atol=tol)
    assert min(l5[0, 1], l5[1, 1]) < l5[2, 1] < max(l5[3, 1], l5[4, 1])  # nose between eyes and mouth


def test_max_side_maps_boxes_back_to_full_frame() -> None:
    img = _astronaut()
    full = get_detector("retinaface").detect(img)[0]
    small = get_detector("retinaface", max_side=256).detect(img)[0]
    # measured at half resolution (face ~48 px wide there): box corners within 5.0 px, landmarks within 6.5 px of the
    # full-resolution result; a wrong mapping back (e.g. no rescale) would be off by ~100 px
    tol = 0.1 * (full.box[2] - full.box[0])
    np.testing.assert_allclose(small.box, full.box, atol=tol)
    np.testing.assert_allclose(small.landmarks5, full.landmarks5, atol=tol)


def test_blank_and_bad_frames() -> None:
    assert get_detector("retinaface").detect(np.full((240, 320, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        get_detector("retinaface").detect(np.zeros((32, 32, 3), np.float32))


@pytest.mark.parametrize("face", sorted(FACES))
def test_dlib68_landmarks_fall_inside_the_box_and_on_the_eyes(face: str) -> None:
    img = FACES[face][0]()
    box = get_detector("retinaface").detect(img)[0].box
    l68 = get_landmarker("dlib68").predict(img, box[None])
    assert l68.shape == (1, 68, 2) and l68.dtype == np.float32
    margin = 0.1 * (box[2:] - box[:2])  # the jaw line may touch the box edge: 10% of the box size
    assert (l68[0] >= box[:2] - margin).all() and (l68[0] <= box[2:] + margin).all()
    _, eyes, mouth, width = FACES[face]
    five = five_from_68(l68[0])
    np.testing.assert_allclose(five[[0, 1, 3, 4]], np.array(eyes + mouth, np.float32), atol=0.12 * width)
    l5 = get_landmarker("dlib5").predict(img, box[None])[0]
    assert (l5 >= box[:2] - margin).all() and (l5 <= box[2:] + margin).all()
    # dlib's 5-point order: image-right eye outer, inner corner; image-left eye outer, inner corner; nose base
    np.testing.assert_allclose(l5[:2].mean(0), eyes[1], atol=0.12 * width)
    np.testing.assert_allclose(l5[2:4].mean(0), eyes[0], atol=0.12 * width)
    assert l5[0, 0] > l5[1, 0] > l5[3, 0] > l5[2, 0] and l5[4, 1] > max(eyes[0][1], eyes[1][1])


def test_five_from_68_order() -> None:
    l68 = np.zeros((2, 68, 2), np.float32)
    l68[:, 36:42] = [10, 20]  # image-left eye contour
    l68[:, 42:48] = [30, 20]
    l68[:, 30] = [20, 30]
    l68[:, 48] = [12, 40]
    l68[:, 54] = [28, 40]
    l68[1] += 100
    expected = np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]], np.float32)
    np.testing.assert_array_equal(five_from_68(l68), np.stack([expected, expected + 100]))
    with pytest.raises(ValueError):
        five_from_68(np.zeros((5, 2)))


def _cartoon_face(size: int = 400) -> tuple[np.ndarray, list[tuple[float, float]], tuple[float, float]]:
    """A flat-shaded anime-style face: big eyes with highlights, bangs, small nose and mouth.

    Returns the image, the eye centres (image-left first) and the mouth centre, all as drawn."""
    im = Image.new("RGB", (size, size), (200, 220, 255))
    d = ImageDraw.Draw(im)
    c = size / 2
    d.ellipse([c - 150, c - 190, c + 150, c + 130], fill=(120, 60, 30))  # hair behind
    d.ellipse([c - 120, c - 130, c + 120, c + 150], fill=(255, 224, 200))  # face
    d.pieslice([c - 150, c - 200, c + 150, c + 20], 180, 360, fill=(120, 60, 30))  # bangs
    eyes = []
    for sx in (-1, 1):
        ex, ey = c + sx * 55, c + 20
        d.ellipse([ex - 32, ey - 45, ex + 32, ey + 45], fill=(255, 255, 255), outline=(0, 0, 0), width=4)
        d.ellipse([ex - 24, ey - 30, ex + 24, ey + 42], fill=(60, 120, 200))
        d.ellipse([ex - 12, ey - 10, ex + 12, ey + 30], fill=(10, 10, 40))
        d.ellipse([ex - 16, ey - 22, ex - 2, ey - 8], fill=(255, 255, 255))
        d.arc([ex - 38, ey - 60, ex + 38, ey - 30], 200, 340, fill=(60, 30, 10), width=5)
        eyes.append((ex, ey))
    d.line([c, c + 70, c - 4, c + 80], fill=(200, 150, 130), width=2)
    d.arc([c - 25, c + 90, c + 25, c + 115], 20, 160, fill=(150, 40, 40), width=4)
    return np.asarray(im), eyes, (c, c + 110)


def test_animeface_finds_a_drawn_cartoon_face() -> None:
    """animeface 2.0.3 + Pillow >= 12 returns nothing through its own API; the detector must still find this face."""
    pytest.importorskip("animeface", reason="optional extra [anime] not installed")
    img, eyes, mouth = _cartoon_face()
    dets = get_detector("animeface").detect(img)
    assert len(dets) == 1
    d = dets[0]
    assert 0.5 <= d.score <= 1.0
    x0, y0, x1, y1 = d.box
    for x, y in [*eyes, mouth]:
        assert x0 <= x <= x1 and y0 <= y <= y1
    assert d.landmarks5 is not None
    np.testing.assert_allclose(d.landmarks5[:2], np.array(eyes, np.float32), atol=25)
    assert abs(d.landmarks5[3:, 0].mean() - mouth[0]) < 25 and abs(d.landmarks5[3:, 1].mean() - mouth[1]) < 25
    # the same face at half size via max_side: boxes come back in full-frame pixels
    half = get_detector("animeface", max_side=200).detect(img)
    assert half, "animeface lost the face at half resolution"
    np.testing.assert_allclose(half[0].box, d.box, atol=0.15 * (x1 - x0))
