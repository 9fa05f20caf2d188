"""``toontalker-bench animate``: drive your own source image with your own video through any method.

The inputs are face-detected and cropped exactly as the dataset's clips are (the align stage's square crop around
the face box, ``align.increase`` margin, ``align.box_mode`` for the video), so a method sees what it was trained on.
The result is written as H.264, either as the method-size crop or pasted back into the source image: through a
feathered ellipse over the detected face (no hard square edge) and with the generated face's colours matched to the
source's there (an undertrained model's tint is not pasted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .core.config import Params
from .core.domains import Domain
from .core.errors import MediaError
from .core.progress import progress
from .core.video import VideoWriter, iter_frames, probe
from .core.visual import save_png, strip_image
from .data.align import crop_boxes, crop_square
from .models.base import Method, to_tensor, to_uint8

log = logging.getLogger(__name__)

Square = tuple[int, int, int]  # x0, y0, side of a crop square in image pixels
CHUNK = 64  # driving frames per animate() call; each chunk is prefixed with the first driving frame
#: the pasted region: an ellipse over the detector's face box grown by ``MASK_GROW`` of its size, feathered by a
#: Gaussian of ``MASK_FEATHER`` of its larger side; at ``align.increase`` 0.4 the feather's 3 sigma fit between the
#: ellipse and the crop square's edge, and the axes shrink when a smaller increase leaves less room
MASK_GROW, MASK_FEATHER = 0.1, 0.04
#: bounds on the colour transfer's per-channel contrast gain: a flat (blurry) output is not stretched into noise
GAIN_RANGE = (0.5, 2.0)
STRIP_PX = 160  # a before/after strip's row height


@dataclass
class AnimateResult:
    out: Path
    n_frames: int
    source_box: Square | None  # the source crop (None without cropping)
    strip: Path | None = None  # the before/after picture, when asked for


def _read_image(path: str | Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise MediaError(f"cannot read image {path}: {e}", hint="pass a PNG or JPEG") from None


def _detector(params: Params, domain: str):  # noqa: ANN202 - Detector
    from .faces.detect import get_detector

    return get_detector(params.tubes.cartoon_detector if domain == "cartoon" else params.tubes.real_detector)


def face_box(frame: np.ndarray, detector) -> np.ndarray | None:  # noqa: ANN001
    """The highest-scoring face box ``x0, y0, x1, y1`` or None."""
    dets = detector.detect(frame)
    return dets[0].box if dets else None


def source_face(params: Params, image: np.ndarray, domain: Domain, what: str) -> tuple[np.ndarray, Square]:
    """The source image's face box ``x0, y0, x1, y1`` and its crop square ``x0, y0, side`` (the align stage's)."""
    b = face_box(image, _detector(params, domain))
    if b is None:
        raise MediaError(f"no face found in {what}", hint="use a picture with a visible face, or --no-crop")
    x0, y0, side = (int(v) for v in crop_boxes(b[None], params.align.increase, "fixed", 1)[0])
    return b, (x0, y0, side)


def driving_crops(frames: list[np.ndarray], detector, params: Params, what: str) -> np.ndarray:  # noqa: ANN001
    """One square per frame: detections every frame, gaps filled from the nearest detected frame."""
    boxes = [face_box(f, detector) for f in progress(frames, desc="detecting faces", unit="frame")]
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        raise MediaError(f"no face found in {what}", hint="use a video with a visible face, or pass --no-crop")
    filled = np.stack([boxes[min(found, key=lambda j: abs(j - i))] for i in range(len(boxes))])
    return crop_boxes(filled, params.align.increase, params.align.box_mode, params.align.smooth_window)


def animate_files(params: Params, method: Method, source: str | Path, driving: str | Path, out: str | Path, *,
                  source_domain: Domain = "cartoon", driving_domain: Domain = "real", crop: bool = True,
                  paste_back: bool = False, blend: bool = True, colour_match: bool = True, max_frames: int = 0,
                  device: torch.device | str = "cpu", strip: str | Path | None = None,
                  strip_frames: int = 6) -> AnimateResult:
    """Animate the face in image ``source`` with video ``driving``; write ``out`` (H.264 mp4). With ``paste_back``,
    ``blend`` feathers the face into the image (else the whole crop square is pasted) and ``colour_match`` gives it
    the source face's colours (else the method's own). ``strip``: also write a PNG of the source beside
    ``strip_frames`` evenly spaced driving frames over the output frames."""
    size = method.size
    src_img = _read_image(source)
    info = probe(driving)
    frames = list(iter_frames(driving, 0, max_frames or None))
    if not frames:
        raise MediaError(f"no frames in {driving}")
    box: Square | None = None
    paster: Paster | None = None
    if crop:
        face, box = source_face(params, src_img, source_domain, str(source))
        src_crop = crop_square(src_img, *box, size)
        if paste_back:
            paster = Paster(src_img, box, face, blend, colour_match)
        crops = driving_crops(frames, _detector(params, driving_domain), params, str(driving))
    else:
        if paste_back:
            raise MediaError("--paste-back needs the face crop", hint="drop --no-crop")
        box = (0, 0, max(src_img.shape[:2]))
        src_crop = crop_square(src_img, *box, size)
        crops = [(0, 0, max(f.shape[:2]))] * len(frames)
    drv = np.stack([crop_square(f, *c, size) for f, c in zip(frames, crops)])
    method.to(device).eval()
    src_t = to_tensor(src_crop).to(device)
    first = to_tensor(drv[:1]).to(device)
    n = 0
    shown = {int(i) for i in np.linspace(0, len(drv) - 1, min(strip_frames, len(drv))).round()} if strip else set()
    outputs: list[np.ndarray] = []  # the strip's output tiles: the face square of what was written
    with VideoWriter(out, fps=info.fps) as writer:
        for start in progress(range(0, len(drv), CHUNK), desc=f"animate {method.name}", unit="chunk"):
            chunk = torch.cat([first, to_tensor(drv[start:start + CHUNK]).to(device)])
            with torch.no_grad():
                result = method.animate(src_t, chunk, source_domain=source_domain, driving_domain=driving_domain,
                                        relative=True)[1:]
            faces = to_uint8(result)
            if paster is not None and start == 0:
                paster.fit_colour(faces)
            for frame in faces:
                written = _even(paster(frame) if paster is not None else frame)
                writer.write(written)
                if n in shown:
                    outputs.append(crop_square(written, *box, STRIP_PX) if paster is not None else written)
                n += 1
    if strip:
        tiles = [crop_square(frames[i], *crops[i], STRIP_PX) for i in sorted(shown)]
        save_png(strip, strip_image(crop_square(src_img, *box, 2 * STRIP_PX), tiles, outputs, STRIP_PX))
    return AnimateResult(Path(out), n, box if crop else None, Path(strip) if strip else None)



def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % 2, : w - w % 2]


def face_mask(face: np.ndarray, box: Square) -> np.ndarray:
    """``(side, side)`` float32 weights in [0, 1] over crop square ``box`` (``x0, y0, side``): 1 on an ellipse over
    face box ``face`` (``x0, y0, x1, y1`` image pixels) grown by :data:`MASK_GROW`, Gaussian-feathered to 0 before
    the square's edge, so that the pasted face has no seam."""
    import cv2

    x0, y0, side = box
    fx0, fy0, fx1, fy1 = (float(v) for v in face)
    sigma = max(MASK_FEATHER * max(fx1 - fx0, fy1 - fy0), 0.5)
    cx, cy = (fx0 + fx1) / 2 - x0, (fy0 + fy1) / 2 - y0
    room = min(cx, cy, side - cx, side - cy) - 3 * sigma  # the feather reaches 3 sigma beyond the ellipse
    axes = [round(max(min(extent * (1 + MASK_GROW) / 2, room), 1)) for extent in (fx1 - fx0, fy1 - fy0)]
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (round(cx), round(cy)), tuple(axes), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of uint8 RGB images ``(..., H, W, 3)`` in float32 (L 0-100), without uint8's rounding."""
    import cv2

    flat = rgb.reshape(-1, rgb.shape[-2], 3).astype(np.float32) / 255.0  # frames stacked: one image for OpenCV
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(rgb.shape)


def _weighted_stats(lab: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``lab`` (..., H, W, 3) under ``weight`` (..., H, W)."""
    w = weight[..., None].astype(np.float64)
    total = w.sum()
    mean = (lab * w).reshape(-1, 3).sum(0) / total
    var = (((lab - mean) ** 2) * w).reshape(-1, 3).sum(0) / total
    return mean, np.sqrt(var)


def colour_transfer(generated: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel CIELAB gain and offset that give ``generated`` (``(N,) H, W, 3`` uint8) the ``weight``-weighted
    mean and standard deviation of ``reference`` (``H, W, 3``) (Reinhard et al.'s transfer; gains bounded by
    :data:`GAIN_RANGE`)."""
    g_mean, g_std = _weighted_stats(_lab(generated), np.broadcast_to(weight, generated.shape[:-1]))
    r_mean, r_std = _weighted_stats(_lab(reference), weight)
    gain = np.clip(r_std / np.maximum(g_std, 1e-6), *GAIN_RANGE)
    return gain, r_mean - gain * g_mean


def apply_colour(rgb: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """:func:`colour_transfer`'s gain and offset applied to a uint8 RGB image."""
    import cv2

    lab = (_lab(rgb) * gain + offset).astype(np.float32)
    return np.clip(np.rint(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0), 0, 255).astype(np.uint8)


class Paster:
    """Writes generated face crops back into the source ``image`` at crop square ``box``: through :func:`face_mask`
    of face box ``face`` (``blend``; else the whole square), with the colours of the source face under that mask
    once :meth:`fit_colour` has seen the first frames (``colour``)."""

    def __init__(self, image: np.ndarray, box: Square, face: np.ndarray, blend: bool, colour: bool) -> None:
        x0, y0, side = box
        h, w = image.shape[:2]
        self.image, self.box, self.colour = image, box, colour
        self.region = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)  # the square inside the image
        self.mask = face_mask(face, box)
        self.alpha = self.mask if blend else np.ones_like(self.mask)
        self.transfer: tuple[np.ndarray, np.ndarray] | None = None

    def _in_square(self, arr: np.ndarray) -> np.ndarray:
        """The part of a square-sized array that lies inside the image."""
        x0, y0, _ = self.box
        ax0, ay0, ax1, ay1 = self.region
        return arr[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]

    def fit_colour(self, faces: np.ndarray) -> None:
        """Fit the colour transfer on generated crops ``faces`` (N, S, S, 3): one transfer for the whole video, so
        that its colours do not flicker; weighted by the mask at the method's size, within the image."""
        import cv2

        if not self.colour:
            return
        size = faces.shape[1]
        inside = np.zeros_like(self.mask)
        self._in_square(inside)[:] = 1.0
        weight = cv2.resize(self.mask * inside, (size, size), interpolation=cv2.INTER_AREA)
        x0, y0, side = self.box
        self.transfer = colour_transfer(faces, crop_square(self.image, x0, y0, side, size), weight)

    def __call__(self, face: np.ndarray) -> np.ndarray:
        import cv2

        ax0, ay0, ax1, ay1 = self.region  # never empty: the square holds the detected face
        out = self.image.copy()
        if self.transfer is not None:
            face = apply_colour(face, *self.transfer)
        side = self.box[2]
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
        alpha = self._in_square(self.alpha)[..., None]
        under = out[ay0:ay1, ax0:ax1].astype(np.float32)
        out[ay0:ay1, ax0:ax1] = np.rint(under + alpha * (self._in_square(big) - under)).astype(np.uint8)
        return out


def load_method(params: Params, method: str, checkpoint: str | None, profile: str | None,
                trust: bool = False) -> Method:
    """A method ready for inference: its profile, or the config stored in a toontalker-bench checkpoint. A trainable
    method without ``checkpoint`` loads the board's best published one (:func:`.leaderboard.verify.best_published`,
    logged: the user sees which weights they got)."""
    from .core.errors import ConfigError
    from .leaderboard.verify import best_published
    from .models.registry import build_method, method_class

    cls = method_class(method)
    if cls.capabilities.needs_driving_ground_truth:
        raise ConfigError(f"{method!r} is an evaluation baseline that copies ground truth, not an animator",
                          hint="pick a method from `toontalker-bench methods`")
    if not checkpoint and cls.capabilities.trainable:
        published = best_published(params.run.leaderboard_dir, params.run.benchmark, method)
        log.info("no --checkpoint: the board's best published %s checkpoint, %s", method, published.text())
        checkpoint = str(published.path)
    return build_method(method, profile, checkpoint=checkpoint, trust=trust, default_profile=params.run.profile)
