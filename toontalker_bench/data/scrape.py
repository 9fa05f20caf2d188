"""Stage 1, scrape: manifests -> ``data/raw/<source_id>.mp4`` + ``sources.parquet`` + ``report.json``.

Remote sources go through yt-dlp's Python API (never a shell; the URL is passed as data, so it can never become an
option), ``file://`` URLs through yt-dlp's file support, and repository-relative paths are hard-linked (copied when
linking fails). Segments (``start``/``end``) are cut with PyAV by re-encoding the frames whose timestamps fall inside
``[start, end)`` — frame-accurate, independent of keyframes, and one code path for every kind of source. A URL used by
several rows (e.g. VoxCeleb utterances of one video) is downloaded once and cut per row.

Every fetched file is probed; a truncated, corrupt or non-video file is a failed source with that reason. Failed
sources are recorded and the stage goes on; it fails (exit 2) only when the fraction of usable sources falls below
``scrape.min_success_fraction``. Each URL's part record (:mod:`.stage`) is the download archive: a rerun skips every
URL whose rows all succeeded, match the manifest and whose files are intact; failed rows are retried.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.config import Params, ScrapeParams, view
from ..core.domains import DOMAINS
from ..core.errors import ConfigError, MediaError, UserError
from ..core.executors import Executor
from ..core.io import atomic_path, sha256_file, write_table
from ..core.video import probe, write_video
from .manifest import Source, local_path, read_manifests
from .stage import Job, Stage

log = logging.getLogger(__name__)

#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("scrape",)

TABLE_COLUMNS = ("source_id", "domain", "url", "title", "license", "attribution", "identity", "split", "start", "end",
                 "status", "reason", "path", "gt_path", "width", "height", "fps", "n_frames", "box")
WORK_DIR = ".work"


class ScrapeError(UserError):
    """Too few sources could be fetched."""


class SourceFailed(Exception):
    """One source (or every row sharing its URL) could not be fetched; the message is the recorded reason."""


class _TimedOut(Exception):
    pass


@dataclass(frozen=True)
class FetchSettings:
    """The picklable part of :class:`ScrapeParams` a worker needs, with the rate limit parsed to bytes/s."""

    out_dir: str
    root: str
    max_height: int
    retries: int
    backoff_s: float
    timeout_s: float
    socket_timeout_s: float
    rate_limit: int | None
    proxy: str | None
    cookies: str | None
    enable_file_urls: bool
    crf: int

    @classmethod
    def from_params(cls, p: ScrapeParams, root: str | os.PathLike[str] = ".") -> FetchSettings:
        rate = None
        if p.rate_limit:
            from yt_dlp.utils import parse_bytes

            rate = parse_bytes(str(p.rate_limit))
            if not rate:
                raise ConfigError(f"scrape.rate_limit {p.rate_limit!r} is not a byte rate",
                                  hint="use e.g. 500K or 2M (bytes per second)")
        if p.cookies and not Path(p.cookies).is_file():
            raise ConfigError(f"scrape.cookies file not found: {p.cookies}",
                              hint="export a Netscape-format cookies.txt or unset scrape.cookies")
        if not 0.0 <= p.min_success_fraction <= 1.0:
            raise ConfigError(f"scrape.min_success_fraction must be in [0, 1], got {p.min_success_fraction}")
        if p.max_height < 1 or p.timeout_s <= 0 or p.socket_timeout_s <= 0 or p.retries < 0:
            raise ConfigError("scrape.max_height, timeout_s and socket_timeout_s must be > 0 and retries >= 0")
        return cls(out_dir=str(p.out_dir), root=str(Path(root).resolve()), max_height=p.max_height,
                   retries=p.retries, backoff_s=p.backoff_s, timeout_s=p.timeout_s,
                   socket_timeout_s=p.socket_timeout_s, rate_limit=rate, proxy=p.proxy or None,
                   cookies=str(Path(p.cookies).resolve()) if p.cookies else None,
                   enable_file_urls=p.enable_file_urls, crf=p.crf)


# --------------------------------------------------------------------------------------------------- stage
def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Fetch every manifest source into ``scrape.out_dir``; returns the report (also written as report.json)."""
    params = view(params, READS)
    p = params.scrape
    settings = FetchSettings.from_params(p)
    sources = read_manifests(p.manifests, root=settings.root)
    stage = Stage("scrape", p.out_dir, params, executor)
    out = stage.out
    groups: dict[str, list[Source]] = {}
    for s in sources:
        groups.setdefault(s.url, []).append(s)
    jobs = [Job(g[0].source_id, _group_key(g, settings), (g, settings)) for g in groups.values()]
    done = stage.run_jobs(jobs, fetch_group, complete=_intact(out), desc="scrape")
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)  # partial downloads of a killed run for URLs now gone

    media: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for job in jobs:
        group = job.payload[0]
        if job.id in done.failures:
            failed |= {s.source_id: done.failures[job.id] for s in group}
        else:
            media |= done.parts[job.id]["media"]
            failed |= done.parts[job.id]["failed"]
    rows = [_row(s, "ok", media=media[s.source_id]) if s.source_id in media
            else _row(s, "failed", failed[s.source_id]) for s in sources]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table = table.astype({"width": "int64", "height": "int64", "n_frames": "int64", "fps": "float64",
                          "start": "float64", "end": "float64"})
    ok_ids = set(table.loc[table.status == "ok", "source_id"])
    _remove_stale(out, ok_ids)
    write_table(out / "sources.parquet", table)

    n_ok = len(ok_ids)
    frac = n_ok / len(sources)
    failed_rows = table[table.status != "ok"]
    report = {
        "stage": "scrape",
        "sources": len(sources),
        "ok": n_ok,
        "failed": len(failed_rows),
        "success_fraction": round(frac, 4),
        "min_success_fraction": p.min_success_fraction,
        "ok_by_domain": {d: int(((table.domain == d) & (table.status == "ok")).sum()) for d in DOMAINS},
        "frames_ok": int(table.loc[table.status == "ok", "n_frames"].sum()),
        "failures": [{"source_id": r.source_id, "url": r.url, "reason": r.reason} for r in failed_rows.itertuples()],
        "failures_by_kind": _reason_counts(failed_rows.reason),
    }
    skipped = sum(len(job.payload[0]) for job in jobs if job.id in done.parts and job.id not in done.new)
    res = stage.finish(report, {"skipped_done": skipped})
    log.info("scrape: %d/%d sources ok (%d already done, %d failed) in %.1fs -> %s",
             n_ok, len(sources), skipped, len(failed_rows), res["wall_seconds"], out / "sources.parquet")
    if frac < p.min_success_fraction:
        worst = "; ".join(f"{f['source_id']}: {f['reason']}" for f in report["failures"][:3])
        raise ScrapeError(f"only {n_ok}/{len(sources)} sources fetched ({frac:.0%} < min_success_fraction "
                          f"{p.min_success_fraction:.0%}); e.g. {worst}",
                          hint=f"see {out / 'report.json'} for every failure and its reason")
    return res


_KINDS = (("timed out", "timeout"), ("not a usable video", "not a video or corrupt"),
          ("more expected", "incomplete download"), ("local file not found", "missing local file"),
          ("holds no frames", "empty segment"), ("is not a valid URL", "invalid url"))


def failure_kind(reason: str) -> str:
    """A coarse class of a failure reason for counting (the reasons themselves name URLs and numbers)."""
    http = re.search(r"HTTP Error (\d{3})", reason)
    if http:
        return f"http {http.group(1)}"
    return next((kind for needle, kind in _KINDS if needle in reason), "other")


def _reason_counts(reasons: pd.Series) -> dict[str, int]:
    return {k: int(v) for k, v in reasons.map(failure_kind).value_counts().sort_index().items()}


def _row(s: Source, status: str, reason: str = "", media: dict[str, Any] | None = None) -> dict[str, Any]:
    media = media or {}
    return {
        "source_id": s.source_id, "domain": s.domain, "url": s.url, "title": s.title, "license": s.license,
        "attribution": s.attribution, "identity": s.identity or s.source_id, "split": s.split,
        "start": s.start, "end": s.end, "status": status, "reason": reason,
        "path": media.get("path", ""), "gt_path": media.get("gt_path", ""),
        "width": int(media.get("width", 0)), "height": int(media.get("height", 0)),
        "fps": float(media.get("fps", 0.0)), "n_frames": int(media.get("n_frames", 0)), "box": s.box_text(),
    }


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop outputs of sources that are no longer listed (or now fail), so the directory matches the table."""
    for pattern, suffix in (("*.mp4", ".mp4"), ("*.gt.parquet", ".gt.parquet")):
        for f in out.glob(pattern):
            if not f.name.startswith(".") and f.name.removesuffix(suffix) not in keep:  # "." = in-flight temp
                f.unlink()


# --------------------------------------------------------------------------------------------------- resume
def _fingerprint(s: Source, settings: FetchSettings) -> list[Any]:
    """What the output of ``s`` depends on; local files add their content's sha256 (and their ground truth's)."""
    parts: list[Any] = [s.source_id, s.url, None if math.isnan(s.start) else s.start,
                        None if math.isnan(s.end) else s.end, settings.max_height,
                        settings.crf if s.has_segment else None]
    if s.kind != "remote":
        path = local_path(s.url, settings.root)
        for f in (path, _gt_beside(path)):
            with contextlib.suppress(OSError):
                parts.append([f.name, sha256_file(f)])
    return parts


def _group_key(group: list[Source], settings: FetchSettings) -> str:
    return hashlib.sha256(json.dumps([_fingerprint(s, settings) for s in group]).encode()).hexdigest()[:20]


def _intact(out: Path):  # noqa: ANN202 - part record -> bool
    """A finished URL group is reused when none of its rows failed and every file is still there, whole."""
    def check(part: dict[str, Any]) -> bool:
        if part["failed"]:
            return False  # failures are retried
        for m in part["media"].values():
            try:
                if (out / m["path"]).stat().st_size != m["size"] or (m["gt_path"] and not (out / m["gt_path"]).is_file()):
                    return False
            except OSError:
                return False
        return True
    return check


# --------------------------------------------------------------------------------------------------- worker
def fetch_group(job: tuple[list[Source], FetchSettings]) -> dict[str, Any]:
    """Fetch one URL and materialise every manifest row that uses it. Returns the part record: ``media`` (per
    source id: file names, size and video properties) and ``failed`` (per source id: the reason)."""
    group, settings = job
    out = Path(settings.out_dir)
    head = group[0]
    work = out / WORK_DIR / hashlib.sha256(head.url.encode()).hexdigest()[:16]
    try:
        try:
            src = _fetch(head, work, settings)
        except SourceFailed as e:
            return {"media": {}, "failed": {s.source_id: str(e) for s in group}}
        try:
            check_complete(src)
        except MediaError as e:
            reason = e.message.replace(str(src), head.url)  # name the source, not a temporary path
            return {"media": {}, "failed": {s.source_id: f"not a usable video: {reason}" for s in group}}
        part: dict[str, Any] = {"media": {}, "failed": {}}
        for s in group:
            try:
                part["media"][s.source_id] = _materialise(s, src, out, settings)
            except (MediaError, SourceFailed) as e:
                part["failed"][s.source_id] = getattr(e, "message", None) or str(e)
        return part
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_complete(path: Path) -> None:
    """Raise :class:`MediaError` unless ``path`` is a video whose every indexed frame is present in the file.

    Probing alone trusts the header: an mp4 with its index first ("faststart", as served on the web) that was cut
    short still claims all its frames. Demuxing (no decoding) every packet catches that at I/O speed.
    """
    import av

    info = probe(path)
    try:
        with av.open(str(path)) as c:
            present = sum(1 for packet in c.demux(c.streams.video[0]) if packet.size)
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise MediaError(f"unreadable video data in {path}: {e}") from e
    if present < 1:
        raise MediaError(f"no frames in {path}")
    if present < info.n_frames:
        raise MediaError(f"truncated video {path}: {present} of {info.n_frames} frames present")


def _fetch(s: Source, work: Path, settings: FetchSettings) -> Path:
    if s.kind == "local":
        path = local_path(s.url, settings.root)
        if not path.is_relative_to(settings.root):
            raise SourceFailed(f"local path {s.url!r} escapes the repository root")
        if not path.is_file():
            raise SourceFailed(f"local file not found: {s.url}")
        return path
    if s.kind == "file" and not settings.enable_file_urls:
        raise SourceFailed("file:// urls are disabled (set scrape.enable_file_urls=true to allow them)")
    return download(s.url, work, settings)


def _gt_beside(video: Path) -> Path:
    return video.with_suffix(".gt.parquet")


def _materialise(s: Source, src: Path, out: Path, settings: FetchSettings) -> dict[str, Any]:
    """Write ``out/<id>.mp4`` (link/copy, or PyAV re-encode for segments and non-mp4 files) + ground truth."""
    dest = out / f"{s.source_id}.mp4"
    first = 0
    if s.has_segment or src.suffix.lower() != ".mp4":
        start = 0.0 if math.isnan(s.start) else s.start
        end = None if math.isnan(s.end) else s.end
        first, _ = cut_segment(src, dest, start, end, crf=settings.crf)
    else:
        link_or_copy(src, dest)
    info = probe(dest)
    gt_name = ""
    gt_src = _gt_beside(local_path(s.url, settings.root)) if s.kind != "remote" else None
    if gt_src is not None and gt_src.is_file():
        gt_name = f"{s.source_id}.gt.parquet"
        _carry_ground_truth(gt_src, out / gt_name, first, info.n_frames if s.has_segment else None)
    return {"path": dest.name, "gt_path": gt_name, "width": info.width, "height": info.height, "fps": info.fps,
            "n_frames": info.n_frames, "size": dest.stat().st_size}


def _carry_ground_truth(src: Path, dest: Path, first: int, n: int | None) -> None:
    """Copy the demo ground truth; for a segment keep frames ``[first, first + n)`` renumbered from 0."""
    if n is None:
        link_or_copy(src, dest)
        return
    gt = pd.read_parquet(src)
    gt = gt[(gt["frame"] >= first) & (gt["frame"] < first + n)].copy()
    gt["frame"] -= first
    write_table(dest, gt.reset_index(drop=True))


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (atomically), copying when linking is impossible (other file system...)."""
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def cut_segment(src: Path, dest: Path, start: float, end: float | None, crf: int = 18) -> tuple[int, int]:
    """Re-encode the frames of ``src`` with ``start <= t < end`` (seconds) to H.264 ``dest``.

    Seeks to the keyframe before ``start`` and decodes forward. Returns ``(index of the first kept frame, count)``.
    Odd frame sizes are cropped by one pixel (yuv420p needs even sizes).
    """
    import av

    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise MediaError(f"cannot open {src.name}: {e}") from e
    with container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        tb = float(stream.time_base)
        origin = (stream.start_time or 0) * tb
        half = 0.5 / fps
        first: list[int] = []
        if start > 0:
            container.seek(int((start + origin) / tb), stream=stream, backward=True)

        def frames():  # noqa: ANN202 - generator of RGB arrays
            try:
                for f in container.decode(stream):
                    t = (f.pts or 0) * tb - origin
                    if t < start - half:
                        continue
                    if end is not None and t >= end - half:
                        return
                    if not first:
                        first.append(round(t * fps))
                    a = f.to_ndarray(format="rgb24")
                    yield a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]
            except av.error.FFmpegError as e:  # type: ignore[attr-defined]
                raise MediaError(f"corrupt video while cutting {src.name}: {e}") from e

        try:
            n = write_video(dest, frames(), fps=fps, crf=crf)
        except MediaError as e:
            if not first:
                raise SourceFailed(f"segment {start:g}-{end if end is not None else 'end'}s holds no frames "
                                   f"(is it past the end of the video?)") from e
            raise
    return first[0], n


# --------------------------------------------------------------------------------------------------- yt-dlp
_CLIENT_ERROR = re.compile(r"HTTP Error 4(?!08|29)\d\d")  # 4xx except timeout / too many requests: no retry
_PERMANENT = ("is not a valid URL", "Unsupported URL", "Video unavailable", "Private video",
              "not available", "has been removed", "copyright", "Requested format is not available",
              "Sign in to confirm your age", "members-only", "file:// URLs are disabled")


def _clean(msg: str) -> str:
    msg = " ".join(msg.replace("\r", " ").split())
    return msg.removeprefix("ERROR:").strip()


class _Logger:
    """Routes yt-dlp's messages to logging instead of stdout."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", msg)


def ytdlp_options(work: Path, settings: FetchSettings, hook: Any) -> dict[str, Any]:
    """yt-dlp options for one download. Only fixed keys; nothing from a manifest row ends up here."""
    h = settings.max_height
    opts: dict[str, Any] = {
        "format": (f"bv*[height<=?{h}][ext=mp4]+ba[ext=m4a]/b[height<=?{h}][ext=mp4]/"
                   f"bv*[height<=?{h}]+ba/b[height<=?{h}]"),
        "merge_output_format": "mp4",
        "outtmpl": str(work / "video.%(ext)s"),
        "paths": {"home": str(work), "temp": str(work)},
        "noplaylist": True,
        "playlist_items": "1",
        "default_search": "error",  # a non-URL is an error, never a YouTube search
        "enable_file_urls": settings.enable_file_urls,
        "socket_timeout": settings.socket_timeout_s,
        "retries": 0,  # retries with backoff happen around the whole attempt
        "fragment_retries": settings.retries,
        "extractor_retries": 0,
        "continuedl": True,
        "overwrites": False,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": "no_color",
        "logger": _Logger(),
        "progress_hooks": [hook],
        "writesubtitles": False,
        "writeinfojson": False,
    }
    if settings.rate_limit:
        opts["ratelimit"] = settings.rate_limit
    if settings.proxy:
        opts["proxy"] = settings.proxy
    if settings.cookies:
        opts["cookiefile"] = settings.cookies
    with contextlib.suppress(Exception):  # without it only merges fail, and they report why
        import imageio_ffmpeg

        opts["ffmpeg_location"] = imageio_ffmpeg.get_ffmpeg_exe()
    return opts


def download(url: str, work: Path, settings: FetchSettings) -> Path:
    """Download ``url`` into ``work`` with retries (exponential backoff) inside a ``timeout_s`` wall-clock budget."""
    _warm_up_ytdlp()  # one-time per-process cost, kept out of the source's budget
    deadline = time.monotonic() + settings.timeout_s
    work.mkdir(parents=True, exist_ok=True)
    last = ""
    attempts = 0
    for attempt in range(settings.retries + 1):
        attempts += 1
        try:
            return _download_once(url, work, settings, deadline)
        except _TimedOut:
            raise SourceFailed(f"timed out after {settings.timeout_s:g}s (scrape.timeout_s)") from None
        except SourceFailed as e:
            last = str(e)
            if _CLIENT_ERROR.search(last) or any(k.lower() in last.lower() for k in _PERMANENT):
                raise
        pause = settings.backoff_s * 2 ** attempt
        if attempt == settings.retries or time.monotonic() + pause >= deadline:
            break
        log.debug("retrying %s in %.1fs after: %s", url, pause, last)
        time.sleep(pause)
    raise SourceFailed(f"{last} (gave up after {attempts} attempt(s))")


@functools.cache
def _warm_up_ytdlp() -> None:
    """Import yt-dlp and compile every extractor's URL pattern (~1 s of CPU on first use in a process)."""
    from yt_dlp.extractor import gen_extractor_classes

    for ie in gen_extractor_classes():
        ie.suitable("http://warm.up/")


def _download_once(url: str, work: Path, settings: FetchSettings, deadline: float) -> Path:
    """One yt-dlp attempt in a helper thread, so the wall-clock budget holds even while yt-dlp waits on a socket."""
    import yt_dlp

    cancel = threading.Event()

    def hook(_: dict[str, Any]) -> None:
        if cancel.is_set() or time.monotonic() > deadline:
            raise _TimedOut()

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            with yt_dlp.YoutubeDL(ytdlp_options(work, settings, hook)) as ydl:
                result["info"] = ydl.extract_info(url, download=True)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            result["error"] = e

    thread = threading.Thread(target=target, name="yt-dlp", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        cancel.set()  # the hook stops the download at its next block; the socket timeout bounds the rest
        raise _TimedOut()
    err = result.get("error")
    if isinstance(err, _TimedOut):
        raise err
    if err is not None:
        if isinstance(err, yt_dlp.utils.DownloadError | yt_dlp.utils.YoutubeDLError):
            raise SourceFailed(_clean(str(err)) or type(err).__name__) from None
        raise SourceFailed(f"{type(err).__name__}: {_clean(str(err))}") from None
    return _downloaded_file(result.get("info") or {}, work)


def _downloaded_file(info: dict[str, Any], work: Path) -> Path:
    if info.get("_type") == "playlist":
        entries = [e for e in info.get("entries") or [] if e]
        info = entries[0] if entries else {}
    for d in info.get("requested_downloads") or []:
        fp = d.get("filepath")
        if fp and Path(fp).is_file():
            return Path(fp)
    done = [f for f in work.glob("video.*") if f.suffix not in (".part", ".ytdl", ".temp")]
    if not done:
        raise SourceFailed("yt-dlp finished without producing a file")
    return max(done, key=lambda f: f.stat().st_size)

