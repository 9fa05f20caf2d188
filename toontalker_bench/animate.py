"""``toontalker-bench animate``: drive your own source image with your own video through any method.

The inputs are face-detected and cropped exactly as the dataset's clips are (the align stage's square crop around
the face box, ``align.increase`` margin, ``align.box_mode`` for the video), so a method sees what it was trained on.
The result is written as H.264, either as the method-size crop or pasted back into the source image.
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
from .data.align import crop_boxes, crop_square
from .models.base import Method, to_tensor, to_uint8

log = logging.getLogger(__name__)

CHUNK = 64  # driving frames per animate() call; each chunk is prefixed with the first driving frame


@dataclass
class AnimateResult:
    out: Path
    n_frames: int
    source_box: tuple[int, int, int] | None  # x0, y0, side of the source crop (None without cropping)


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
                  paste_back: bool = False, max_frames: int = 0, device: torch.device | str = "cpu") -> AnimateResult:
    """Animate the face in image ``source`` with video ``driving``; write ``out`` (H.264 mp4)."""
    size = method.size
    src_img = _read_image(source)
    info = probe(driving)
    frames = list(iter_frames(driving, 0, max_frames or None))
    if not frames:
        raise MediaError(f"no frames in {driving}")
    box = None
    if crop:
        b = face_box(src_img, _detector(params, source_domain))
        if b is None:
            raise MediaError(f"no face found in {source}", hint="use a picture with a visible face, or --no-crop")
        box = tuple(int(v) for v in crop_boxes(b[None], params.align.increase, "fixed", 1)[0])
        src_crop = crop_square(src_img, *box, size)
        crops = driving_crops(frames, _detector(params, driving_domain), params, str(driving))
        drv = np.stack([crop_square(f, *c, size) for f, c in zip(frames, crops)])
    else:
        if paste_back:
            raise MediaError("--paste-back needs the face crop", hint="drop --no-crop")
        src_crop = crop_square(src_img, 0, 0, max(src_img.shape[:2]), size)
        drv = np.stack([crop_square(f, 0, 0, max(f.shape[:2]), size) for f in frames])
    method.to(device).eval()
    src_t = to_tensor(src_crop).to(device)
    first = to_tensor(drv[:1]).to(device)
    n = 0
    with VideoWriter(out, fps=info.fps) as writer:
        for start in progress(range(0, len(drv), CHUNK), desc=f"animate {method.name}", unit="chunk"):
            chunk = torch.cat([first, to_tensor(drv[start:start + CHUNK]).to(device)])
            with torch.no_grad():
                result = method.animate(src_t, chunk, source_domain=source_domain, driving_domain=driving_domain,
                                        relative=True)[1:]
            for frame in to_uint8(result):
                writer.write(_paste(src_img, frame, box) if paste_back and box else _even(frame))
                n += 1
    return AnimateResult(Path(out), n, box)  # type: ignore[arg-type]


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % 2, : w - w % 2]


def _paste(image: np.ndarray, face: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """``face`` resized to the crop square and written over ``image`` where the square lies inside it."""
    import cv2

    x0, y0, side = box
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    h, w = out.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0:ay1, ax0:ax1] = big[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    return _even(out)


def load_method(params: Params, method: str, checkpoint: str | None, profile: str | None,
                trust: bool = False) -> Method:
    """A method ready for inference: its profile, or the config stored in a toontalker-bench checkpoint."""
    from .core.errors import CheckpointError, ConfigError
    from .models.registry import build_method, method_class

    cls = method_class(method)
    if cls.capabilities.needs_driving_ground_truth:
        raise ConfigError(f"{method!r} is an evaluation baseline that copies ground truth, not an animator",
                          hint="pick a method from `toontalker-bench methods`")
    if not checkpoint and cls.capabilities.trainable:
        raise CheckpointError(f"method {method!r} needs --checkpoint", hint="train one with `toontalker-bench run`")
    return build_method(method, profile, checkpoint=checkpoint, trust=trust, default_profile=params.run.profile)
