"""Source manifests: CSV files listing the videos the dataset is built from, validated row by row.

Columns: ``source_id, url, domain, title, license, attribution`` (required) and ``start, end, identity, split, box``
(optional). ``url`` is an ``http(s)://`` URL (any site yt-dlp supports), a ``file://`` URL, or a path relative to the
repository root that must stay inside it. ``start``/``end`` are seconds; ``box`` is ``x0 y0 x1 y1`` as fractions of
the frame width/height (a hint for the faces stage). Every row is checked before anything is downloaded, and all
problems are reported at once with their CSV line numbers.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..core.domains import DOMAINS
from ..core.errors import ManifestError
from ..core.io import safe_name, write_text

REQUIRED = ("source_id", "url", "domain", "title", "license", "attribution")
OPTIONAL = ("identity", "split", "start", "end", "box")
COLUMNS = REQUIRED + OPTIONAL
SPLITS = ("", "train", "test")
MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class Source:
    """One validated manifest row. ``start``/``end`` are NaN when absent; ``box`` is () or 4 fractions."""

    source_id: str
    url: str
    domain: str
    title: str
    license: str
    attribution: str
    identity: str = ""
    split: str = ""
    start: float = math.nan
    end: float = math.nan
    box: tuple[float, ...] = ()
    manifest: str = ""
    line: int = 0

    @property
    def kind(self) -> str:
        """``remote`` (yt-dlp over http/https), ``file`` (yt-dlp over file://) or ``local`` (a repo path)."""
        return url_kind(self.url)

    @property
    def has_segment(self) -> bool:
        return not (math.isnan(self.start) and math.isnan(self.end))

    def box_text(self) -> str:
        return format_box(self.box)


def url_kind(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return "remote"
    if scheme == "file":
        return "file"
    return "local"


def format_box(box: Sequence[float]) -> str:
    return " ".join(f"{v:.4f}" for v in box)


def local_path(url: str, root: str | os.PathLike[str]) -> Path:
    """The file a ``local`` or ``file`` source points at (a local path is resolved against ``root``)."""
    if url_kind(url) == "file":
        return Path(unquote(urlsplit(url).path))
    return (Path(root) / url).resolve()


# --------------------------------------------------------------------------------------------------- validation
def _check_url(url: str, root: Path) -> str | None:
    """Return a problem with ``url`` or None. A URL is data, never an option: anything starting with '-' is refused."""
    if not url:
        return "empty url"
    if url != url.strip() or any(c in url for c in "\r\n\t"):
        return f"url {url!r} has surrounding whitespace or control characters"
    if url.startswith("-"):
        return f"url {url!r} starts with '-' (refused: it could be read as an option)"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return None if parts.netloc else f"url {url!r} has no host"
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            return f"file url {url!r} must be file:///absolute/path"
        return None
    if scheme and len(scheme) > 1:  # one letter = a Windows drive, handled as a path below
        return f"url scheme {scheme!r} is not supported in {url!r} (use http, https, file or a relative path)"
    p = Path(url)
    if p.is_absolute() or (len(url) > 1 and url[1] == ":"):
        return f"local path {url!r} is absolute (use a path relative to the repository root, or a file:// url)"
    resolved = (root / p).resolve()
    if not resolved.is_relative_to(root.resolve()):
        return f"local path {url!r} escapes the repository root"
    return None


def _float(text: str, name: str, errors: list[str]) -> float:
    if text == "":
        return math.nan
    try:
        v = float(text)
    except ValueError:
        errors.append(f"{name} {text!r} is not a number of seconds")
        return math.nan
    if not math.isfinite(v) or v < 0:
        errors.append(f"{name} {text!r} must be a finite number >= 0")
        return math.nan
    return v


def parse_box(text: str) -> tuple[float, ...]:
    """``"x0 y0 x1 y1"`` (fractions of width/height) -> tuple; raises ValueError with the reason."""
    if not text:
        return ()
    try:
        box = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"box {text!r} is not four numbers") from None
    if len(box) != 4:
        raise ValueError(f"box {text!r} needs 4 numbers x0 y0 x1 y1")
    x0, y0, x1, y1 = box
    if not all(0.0 <= v <= 1.0 for v in box) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {text!r} must be fractions in [0, 1] with x0 < x1 and y0 < y1")
    return box


def _row(raw: dict[str, str], where: str, line: int, root: Path) -> tuple[Source | None, list[str]]:
    errors: list[str] = []
    vals = {k: (raw.get(k) or "").strip() for k in COLUMNS}
    if any("\x00" in v for v in raw.values() if isinstance(v, str)):
        return None, ["NUL byte in a field"]
    sid = vals["source_id"]
    if not safe_name(sid):
        errors.append(f"source_id {sid!r} is not a safe file name (letters, digits, '.', '_', '-'; starts with a "
                      "letter or digit; no '..'; at most 128 characters)")
    problem = _check_url(raw.get("url") or "", root)
    if problem:
        errors.append(problem)
    if vals["domain"] not in DOMAINS:
        errors.append(f"unknown domain {vals['domain']!r} (use cartoon or real)")
    if vals["split"] not in SPLITS:
        errors.append(f"unknown split {vals['split']!r} (use train, test or leave empty)")
    for col in ("title", "license", "attribution"):
        if not vals[col]:
            errors.append(f"empty {col}")
    start = _float(vals["start"], "start", errors)
    end = _float(vals["end"], "end", errors)
    if not math.isnan(start) and not math.isnan(end) and end <= start:
        errors.append(f"end {end:g} <= start {start:g}")
    try:
        box = parse_box(vals["box"])
    except ValueError as e:
        errors.append(str(e))
        box = ()
    if errors:
        return None, errors
    return Source(source_id=sid, url=raw["url"], domain=vals["domain"], title=vals["title"], license=vals["license"],
                  attribution=vals["attribution"], identity=vals["identity"], split=vals["split"], start=start,
                  end=end, box=box, manifest=where, line=line), []


def read_manifest(path: str | os.PathLike[str], root: str | os.PathLike[str] = ".") -> list[Source]:
    """Read and validate one manifest. Raises :class:`ManifestError` (one line) listing the bad rows."""
    return validate_sources(_read_rows_or_raise(path, root))


def read_manifests(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str] = ".") -> list[Source]:
    """Read several manifests; ``source_id`` must be unique across all of them."""
    paths = list(paths)
    if not paths:
        raise ManifestError("no manifest given", hint="set scrape.manifests in params.yaml")
    sources: list[Source] = []
    problems: list[str] = []
    for p in paths:
        try:
            sources.extend(_read_rows(p, root))
        except _RowErrors as e:
            problems.extend(e.problems)
    if problems:
        raise _as_error(problems)
    return validate_sources(sources)


class _RowErrors(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _as_error(problems: list[str]) -> ManifestError:
    shown = "; ".join(problems[:MAX_ERRORS_SHOWN])
    more = f" (+{len(problems) - MAX_ERRORS_SHOWN} more)" if len(problems) > MAX_ERRORS_SHOWN else ""
    return ManifestError(f"{len(problems)} invalid manifest row(s): {shown}{more}",
                         hint="fix the rows named above (CSV line numbers count the header as line 1)")


def validate_sources(sources: list[Source]) -> list[Source]:
    """Cross-row checks (duplicate ids, ids equal up to case) on already-parsed rows."""
    seen: dict[str, Source] = {}
    problems = []
    for s in sources:
        key = s.source_id.lower()  # case-insensitive file systems would merge these files
        if key in seen:
            first = seen[key]
            problems.append(f"{s.manifest} line {s.line}: duplicate source_id {s.source_id!r} "
                            f"(first at {first.manifest} line {first.line})")
        else:
            seen[key] = s
    if problems:
        raise _as_error(problems)
    if not sources:
        raise ManifestError("the manifest(s) list no sources", hint="add rows or pick another manifest")
    return sources


def _read_rows(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> list[Source]:
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read manifest {where}: {e.strerror or e}",
                            hint="check scrape.manifests in params.yaml") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"manifest {where} is not UTF-8 text (byte {e.start})",
                            hint="save it as UTF-8 CSV") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ManifestError(f"manifest {where} line {line}: NUL byte", hint="the file is binary or corrupt")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as e:
        raise ManifestError(f"manifest {where} is not valid CSV: {e}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ManifestError(f"manifest {where} lacks column(s) {', '.join(missing)}",
                            hint=f"the header must name at least: {','.join(REQUIRED)}")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise ManifestError(f"manifest {where} has unknown column(s) {', '.join(map(repr, unknown))}",
                            hint=f"allowed columns: {','.join(COLUMNS)}")
    rootp = Path(root)
    sources, problems = [], []
    try:
        for raw_row in reader:
            line = reader.line_num
            if None in raw_row:
                problems.append(f"{where} line {line}: more fields than columns")
                continue
            if not any((v or "").strip() for v in raw_row.values()):
                continue  # blank line
            src, errs = _row(raw_row, where, line, rootp)
            problems.extend(f"{where} line {line}: {e}" for e in errs)
            if src is not None:
                sources.append(src)
    except csv.Error as e:
        raise ManifestError(f"manifest {where} line {reader.line_num}: not valid CSV: {e}") from None
    if problems:
        raise _RowErrors(problems)
    return sources


def _read_rows_or_raise(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> list[Source]:
    try:
        return _read_rows(path, root)
    except _RowErrors as e:
        raise _as_error(e.problems) from None


def check_sources(sources: Iterable[Source], where: str) -> list[Source]:
    """Validate sources built in code (importers) exactly like CSV rows; row ``i`` is reported as line ``i + 2``."""
    out, problems = [], []
    for i, s in enumerate(sources):
        src, errs = _row(to_row(s), where, i + 2, Path("."))
        problems.extend(f"{where} line {i + 2}: {e}" for e in errs)
        if src is not None:
            out.append(src)
    if problems:
        raise _as_error(problems)
    return validate_sources(out)


# --------------------------------------------------------------------------------------------------- writing
def to_row(s: Source) -> dict[str, str]:
    """A :class:`Source` as the CSV strings of a manifest row."""
    d = asdict(s)
    out = {k: str(d[k]) for k in REQUIRED + ("identity", "split")}
    out["start"] = "" if math.isnan(s.start) else f"{s.start:g}"
    out["end"] = "" if math.isnan(s.end) else f"{s.end:g}"
    out["box"] = s.box_text()
    return out


def write_manifest(path: str | os.PathLike[str], sources: Iterable[Source]) -> int:
    """Write sources as a manifest CSV (atomically). Returns the row count."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    n = 0
    for s in sources:
        w.writerow(to_row(s))
        n += 1
    write_text(path, buf.getvalue())
    return n
