"""Turn public talking-face dataset metadata into our manifest schema (``data import-manifest``).

Supported inputs (all are metadata the dataset authors publish; the videos stay on YouTube):

- ``vox``: VoxCeleb1/2 per-utterance txt files (a folder tree ``<identity>/<youtube id>/<utterance>.txt``, one file,
  or the released zip). Header lines ``Identity``, ``Reference`` (YouTube id), ``Offset``, ``FV Conf`` then a
  ``FRAME X Y W H`` table at 25 fps. VoxCeleb2 boxes are fractions of the frame; VoxCeleb1 boxes are pixels of a
  360-pixel-high frame (the convention of the public preprocessing scripts) and are normalised assuming 16:9.
- ``celebvhq``: ``celebvhq_info.json`` (``clips -> {ytb_id, duration {start_sec, end_sec}, bbox {top, bottom,
  left, right}}``, boxes already fractions of the frame).
- ``hdtf``: a folder with ``{RD,WDA,WRA}_video_url.txt`` (``name url``) and ``*_annotion_time.txt``
  (``name.mp4 mm:ss-mm:ss ...``); when ``*_crop_wh.txt`` (``name_k.mp4 x w y h`` pixels) and ``*_resolution.txt``
  (``name.mp4 height``) are present too, each clip gets a box (normalised assuming 16:9).
- ``fomm-csv``: the metadata CSVs of the first-order-model preprocessing repository (AliaksandrSiarohin/
  video-preprocessing), from which most reenactment work builds VoxCeleb (``vox-metadata.csv``) and TaiChi-HD
  (``taichi-metadata.csv``): ``video_id,start,end,bbox,fps,width,height,partition[,person_id]``, ``start``/``end``
  frame numbers at ``fps`` (end exclusive), ``bbox`` ``x0-y0-x1-y1`` pixels of a ``width`` x ``height`` frame. The
  published ``partition`` is kept as the split and ``person_id`` as the identity (TaiChi has none: the video id
  stands in). ``--format vox`` given such a CSV reads it as ``fomm-csv``.

Each utterance/clip becomes one row with ``start``/``end`` seconds and a ``box`` = ``x0 y0 x1 y1`` in fractions of
the frame width/height (the union of the per-frame boxes for VoxCeleb).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import ManifestError
from .manifest import Source, check_sources, write_manifest

log = logging.getLogger(__name__)

FORMATS = ("vox", "celebvhq", "hdtf", "fomm-csv")
VOX_FPS = 25.0
VOX1_REF_HEIGHT = 360.0
ASPECT = 16 / 9
YOUTUBE = "https://www.youtube.com/watch?v={}"
_YT_ID = re.compile(r"[A-Za-z0-9_-]{6,20}")


class _Skip(Exception):
    """A metadata entry that cannot become a row; the message is recorded."""


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
    box = tuple(round(_clip01(v), 4) for v in (x0, y0, x1, y1))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise _Skip(f"empty face box {x0:g} {y0:g} {x1:g} {y1:g}")
    return box


def _youtube(ref: str) -> str:
    if not _YT_ID.fullmatch(ref):
        raise _Skip(f"{ref!r} is not a YouTube video id")
    return YOUTUBE.format(ref)


# --------------------------------------------------------------------------------------------------- VoxCeleb
def parse_vox_txt(text: str) -> dict[str, Any]:
    """One VoxCeleb utterance file -> ``identity, reference, frames [int], boxes [(x, y, w, h)]``."""
    head: dict[str, str] = {}
    frames: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    in_table = False
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if in_table:
            if len(parts) != 5:
                raise _Skip(f"bad FRAME row {line.strip()!r}")
            try:
                frames.append(int(parts[0]))
                boxes.append(tuple(float(v) for v in parts[1:]))  # type: ignore[arg-type]
            except ValueError:
                raise _Skip(f"bad FRAME row {line.strip()!r}") from None
        elif parts[0] == "FRAME":
            in_table = True
        elif ":" in line:
            key, value = line.split(":", 1)
            head[key.strip().lower()] = value.split()[0] if value.split() else ""
    for key in ("identity", "reference"):
        if not head.get(key):
            raise _Skip(f"no {key.capitalize()} line")
    if not frames:
        raise _Skip("no FRAME rows")
    return {"identity": head["identity"], "reference": head["reference"], "frames": frames, "boxes": boxes}


def _vox_files(path: Path) -> Iterator[tuple[str, str]]:
    """(name relative to the input, text) for every utterance txt in a folder, a zip, or one file."""
    if path.is_dir():
        for f in sorted(path.rglob("*.txt")):
            yield f.relative_to(path).as_posix(), f.read_text(encoding="utf-8", errors="replace")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for n in sorted(z.namelist()):
                if n.endswith(".txt"):
                    yield n, z.read(n).decode("utf-8", errors="replace")
    else:
        yield path.name, path.read_text(encoding="utf-8", errors="replace")


def _vox_split(rel: str) -> str:
    parts = set(Path(rel).parts[:-1])
    if "test" in parts:
        return "test"
    if parts & {"dev", "train"}:
        return "train"
    return ""


def import_vox(path: Path) -> tuple[list[Source], list[str]]:
    sources, skipped = [], []
    for rel, text in _vox_files(path):
        try:
            u = parse_vox_txt(text)
            url = _youtube(u["reference"])
            utt = Path(rel).stem
            xs = [(x, y, x + w, y + h) for x, y, w, h in u["boxes"] if w > 0 and h > 0]
            if not xs:
                raise _Skip("no non-empty face box")
            x0, y0 = min(b[0] for b in xs), min(b[1] for b in xs)
            x1, y1 = max(b[2] for b in xs), max(b[3] for b in xs)
            if max(x1, y1) > 1.5:  # VoxCeleb1: pixels of a 360-high frame
                sx, sy = VOX1_REF_HEIGHT * ASPECT, VOX1_REF_HEIGHT
                x0, x1, y0, y1 = x0 / sx, x1 / sx, y0 / sy, y1 / sy
            first, last = min(u["frames"]), max(u["frames"])
            sources.append(Source(
                source_id=f"vox-{u['identity']}-{u['reference']}-{utt}", url=url, domain="real",
                title=f"VoxCeleb {u['identity']} {u['reference']} utterance {utt}",
                license="video: YouTube (uploader's terms); VoxCeleb metadata: CC BY 4.0",
                attribution=f"VoxCeleb (Nagrani et al. 2017; Chung et al. 2018); {url}",
                identity=u["identity"], split=_vox_split(rel), start=round(first / VOX_FPS, 3),
                end=round((last + 1) / VOX_FPS, 3), box=_box(x0, y0, x1, y1)))
        except _Skip as e:
            skipped.append(f"{rel}: {e}")
    return sources, skipped


# --------------------------------------------------------------------------------------------------- CelebV-HQ
def import_celebvhq(path: Path) -> tuple[list[Source], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ManifestError(f"cannot read CelebV-HQ metadata {path}: {e}",
                            hint="pass celebvhq_info.json from the CelebV-HQ repository") from None
    clips = data.get("clips") if isinstance(data, dict) else None
    if not isinstance(clips, dict):
        raise ManifestError(f"{path} has no 'clips' mapping", hint="pass celebvhq_info.json")
    sources, skipped = [], []
    for clip_id in sorted(clips):
        c = clips[clip_id]
        try:
            if not isinstance(c, dict):
                raise _Skip("entry is not a mapping")
            url = _youtube(str(c.get("ytb_id", "")))
            d, b = c.get("duration") or {}, c.get("bbox") or {}
            start, end = float(d["start_sec"]), float(d["end_sec"])
            box = _box(float(b["left"]), float(b["top"]), float(b["right"]), float(b["bottom"]))
            sources.append(Source(
                source_id=f"celebvhq-{clip_id}", url=url, domain="real", title=f"CelebV-HQ clip {clip_id}",
                license="video: YouTube (uploader's terms); CelebV-HQ metadata: see its repository",
                attribution=f"CelebV-HQ (Zhu et al. 2022); {url}", identity=str(c["ytb_id"]),
                start=start, end=end, box=box))
        except _Skip as e:
            skipped.append(f"{clip_id}: {e}")
        except (KeyError, TypeError, ValueError) as e:
            skipped.append(f"{clip_id}: missing or bad field {e}")
    return sources, skipped


# --------------------------------------------------------------------------------------------------- HDTF
def _seconds(stamp: str) -> float:
    parts = stamp.split(":")
    if not 1 <= len(parts) <= 3:
        raise _Skip(f"bad time stamp {stamp!r}")
    try:
        return sum(float(v) * 60 ** i for i, v in enumerate(reversed(parts)))
    except ValueError:
        raise _Skip(f"bad time stamp {stamp!r}") from None


def _hdtf_table(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        parts = line.split()
        if parts:
            out[parts[0].removesuffix(".mp4")] = parts[1:]
    return out


def import_hdtf(path: Path) -> tuple[list[Source], list[str]]:
    folder = path if path.is_dir() else path.parent
    url_files = sorted(folder.glob("*_video_url.txt")) if path.is_dir() else [path]
    if not url_files or not all(f.name.endswith("_video_url.txt") for f in url_files):
        raise ManifestError(f"no *_video_url.txt in {path}",
                            hint="pass the HDTF_dataset folder (RD/WDA/WRA *_video_url.txt + *_annotion_time.txt)")
    sources, skipped = [], []
    for url_file in url_files:
        subset = url_file.name.removesuffix("_video_url.txt")
        urls = _hdtf_table(url_file)
        times = _hdtf_table(folder / f"{subset}_annotion_time.txt")
        crops = _hdtf_table(folder / f"{subset}_crop_wh.txt")
        heights = _hdtf_table(folder / f"{subset}_resolution.txt")
        if not times:
            raise ManifestError(f"{folder / (subset + '_annotion_time.txt')} is missing or empty",
                                hint="HDTF needs the *_annotion_time.txt beside each *_video_url.txt")
        for name in sorted(urls):
            try:
                if not urls[name] or not urls[name][0].startswith(("http://", "https://")):
                    raise _Skip("no URL")
                if name not in times or not times[name]:
                    raise _Skip("no annotated time stamps")
                identity = name if subset == "RD" else re.sub(r"[_\d]+$", "", name) or name
                for k, span in enumerate(times[name]):
                    try:
                        a, b = span.split("-")
                        start, end = _seconds(a), _seconds(b)
                        box: tuple[float, ...] = ()
                        crop, height = crops.get(f"{name}_{k}"), heights.get(name)
                        if crop and height:
                            x, w, y, h = (float(v) for v in crop[:4])
                            hh = float(height[0])
                            ww = round(hh * ASPECT)
                            box = _box(x / ww, y / hh, (x + w) / ww, (y + h) / hh)
                        sources.append(Source(
                            source_id=f"hdtf-{subset}_{name}_{k}", url=urls[name][0], domain="real",
                            title=f"HDTF {subset} {name} clip {k}",
                            license="video: YouTube (uploader's terms); HDTF metadata: see its repository",
                            attribution=f"HDTF (Zhang et al. 2021); {urls[name][0]}", identity=identity,
                            start=start, end=end, box=box))
                    except (_Skip, ValueError) as e:
                        skipped.append(f"{subset}/{name} clip {k}: {e}")
            except _Skip as e:
                skipped.append(f"{subset}/{name}: {e}")
    return sources, skipped


# --------------------------------------------------------------------------------------------------- FOMM CSV
FOMM_COLUMNS = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition")
_FOMM_DATASETS = {  # file name prefix -> (source id prefix, title, attribution)
    "vox": ("vox", "VoxCeleb", "VoxCeleb (Nagrani et al. 2017; Chung et al. 2018), clips as cut by the "
            "first-order-model preprocessing (Siarohin et al. 2019, AliaksandrSiarohin/video-preprocessing)"),
    "taichi": ("taichi", "TaiChi-HD", "TaiChi-HD (Siarohin et al. 2019, AliaksandrSiarohin/video-preprocessing)"),
}


def is_fomm_csv(path: Path) -> bool:
    """Whether ``path`` is a file whose first line is a first-order-model metadata header."""
    if not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = f.readline()
    except OSError:
        return False
    cols = [c.strip() for c in head.split(",")]
    return tuple(cols[:len(FOMM_COLUMNS)]) == FOMM_COLUMNS


def import_fomm_csv(path: Path) -> tuple[list[Source], list[str]]:
    """One row per clip: ``<dataset>-[<person_id>-]<video_id>-<start>-<end>`` (start/end: the CSV's frame
    numbers), ``start``/``end`` seconds = frames / ``fps``, ``box`` = ``bbox`` / (``width``, ``height``), clipped to the
    frame. Exact repeats of an earlier row (vox-metadata.csv has 299) are skipped and listed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read first-order-model metadata {path}: {e}",
                            hint="pass vox-metadata.csv or taichi-metadata.csv") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = tuple(reader.fieldnames or ())
    if header[:len(FOMM_COLUMNS)] != FOMM_COLUMNS:
        raise ManifestError(f"{path} is not first-order-model metadata (header {','.join(header)!r})",
                            hint=f"the header must start with {','.join(FOMM_COLUMNS)}")
    stem = path.name.split("-")[0].split(".")[0].lower()
    prefix, name, attribution = _FOMM_DATASETS.get(stem, ("fomm", "first-order-model clip",
                                                          "first-order-model preprocessing metadata (Siarohin et al. "
                                                          "2019, AliaksandrSiarohin/video-preprocessing)"))
    sources, skipped = [], []
    seen: dict[tuple, int] = {}
    for row in reader:
        line = reader.line_num
        try:
            vid = (row.get("video_id") or "").strip()
            url = _youtube(vid)
            try:
                start, end, fps = int(row["start"]), int(row["end"]), float(row["fps"])
                width, height = float(row["width"]), float(row["height"])
                x0, y0, x1, y1 = (float(v) for v in row["bbox"].split("-"))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise _Skip("bad start/end/bbox/fps/width/height " + " ".join(
                    repr(row.get(k)) for k in ("start", "end", "bbox", "fps", "width", "height"))) from None
            if not (fps > 0 and width > 0 and height > 0 and 0 <= start < end):
                raise _Skip(f"bad frame range {start}-{end} at {fps:g} fps or frame size {width:g}x{height:g}")
            split = (row.get("partition") or "").strip().lower()
            if split not in ("train", "test"):
                raise _Skip(f"unknown partition {split!r} (train or test)")
            person = (row.get("person_id") or "").strip()
            key = (vid, start, end, person)
            if key in seen:
                raise _Skip(f"repeats line {seen[key]} ({vid} frames {start}-{end})")
            seen[key] = line
            identity = person or vid
            sid = "-".join([prefix, *([person] if person else []), vid, f"{start:06d}", f"{end:06d}"])
            sources.append(Source(
                source_id=sid, url=url, domain="real", title=f"{name} {vid} frames {start}-{end} at {fps:g} fps",
                license=f"video: YouTube (uploader's terms); {name} metadata: see "
                        "AliaksandrSiarohin/video-preprocessing",
                attribution=f"{attribution}; {url}", identity=identity, split=split,
                start=round(start / fps, 3), end=round(end / fps, 3),
                box=_box(x0 / width, y0 / height, x1 / width, y1 / height)))
        except _Skip as e:
            skipped.append(f"line {line}: {e}")
    return sources, skipped


# --------------------------------------------------------------------------------------------------- entry
IMPORTERS = {"vox": import_vox, "celebvhq": import_celebvhq, "hdtf": import_hdtf, "fomm-csv": import_fomm_csv}


def import_manifest(fmt: str, input_path: str | Path, out: str | Path, limit: int | None = None) -> dict[str, Any]:
    """Convert dataset metadata to a manifest at ``out``; returns ``{rows, skipped, out}``.

    Entries that cannot become a valid row are skipped and listed (never dropped silently); the written manifest
    passes the same validation as a hand-written one.
    """
    if fmt not in IMPORTERS:
        raise ManifestError(f"unknown import format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    path = Path(input_path)
    if not path.exists():
        raise ManifestError(f"import input not found: {path}")
    if fmt == "vox" and is_fomm_csv(path):
        log.info("import vox: %s is first-order-model metadata (vox-metadata.csv); reading it as fomm-csv", path)
        fmt = "fomm-csv"
    sources, skipped = IMPORTERS[fmt](path)
    if limit is not None:
        sources = sources[:limit]
    for reason in skipped:
        log.warning("import %s: skipped %s", fmt, reason)
    if not sources:
        raise ManifestError(f"no usable entries in {path} ({len(skipped)} skipped"
                            + (f", e.g. {skipped[0]}" if skipped else "") + ")",
                            hint=f"check that it is {fmt} metadata")
    sources = check_sources(sources, str(out))
    n = write_manifest(out, sources)
    segs = [s.end - s.start for s in sources if not (math.isnan(s.start) or math.isnan(s.end))]
    log.info("import %s: %d rows (%d skipped, %.1f min of segments) -> %s", fmt, n, len(skipped),
             sum(segs) / 60, out)
    return {"rows": n, "skipped": skipped, "out": str(out)}
