"""Scrape stage against a loopback HTTP server, file:// URLs and local paths: real yt-dlp, real PyAV."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_media import remux_faststart, truncate, write_plain

from toontalker_bench.cli import main
from toontalker_bench.core.config import Params, ScrapeParams
from toontalker_bench.core.errors import UserError
from toontalker_bench.core.executors import LocalExecutor
from toontalker_bench.core.video import probe, read_frames
from toontalker_bench.data.scrape import TABLE_COLUMNS, FetchSettings, SourceFailed, download, run, ytdlp_options

HEADER = "source_id,url,domain,title,license,attribution,identity,split,start,end\n"
N_FRAMES = 50
TIMEOUT_S = 2.5  # per-source budget: short for the slow source, enough for a good one on a loaded machine


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files plus two misbehaving routes: /short/* (body shorter than Content-Length) and /slow/* (dribbles)."""

    hits: Counter = Counter()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).hits[self.path] += 1
        if self.path.startswith("/once-slow/") and type(self).hits[self.path] == 1:
            time.sleep(60)  # the first request hangs (the test kills the scrape meanwhile); later ones are served
            return
        if self.path.startswith("/once-slow/"):
            self.path = "/ok.mp4"
        if self.path.startswith("/busy"):
            self.send_error(429, "Too Many Requests")
            return
        if self.path.startswith(("/short/", "/slow/")):
            data = (Path(self.directory) / "ok.mp4").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                if self.path.startswith("/short/"):
                    self.wfile.write(data[: len(data) // 2])
                    return
                for i in range(0, len(data), 64):  # ~15 s for the file: far past the test timeout
                    self.wfile.write(data[i:i + 64])
                    self.wfile.flush()
                    time.sleep(0.25)
            except OSError:
                return
            return
        super().do_GET()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("media")
    write_plain(d / "ok.mp4", N_FRAMES)
    truncate(d / "ok.mp4", d / "trunc.mp4", 0.5)
    (d / "note.txt").write_text("this is not a video\n")
    return d


@pytest.fixture(scope="module")
def server(media: Path) -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(media)))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _params(tmp_path: Path, manifest: Path, **kw: object) -> Params:
    base = dict(out_dir=str(tmp_path / "raw"), manifests=[str(manifest)], retries=1, backoff_s=0.05,
                timeout_s=TIMEOUT_S, socket_timeout_s=1.0, min_success_fraction=0.0)
    base.update(kw)
    return Params(workers=1, scrape=ScrapeParams(**base))  # type: ignore[arg-type]


def _manifest(tmp_path: Path, rows: list[str]) -> Path:
    m = tmp_path / "m.csv"
    m.write_text(HEADER + "".join(f"{r},real,T,CC0,Nobody,,,\n" if r.count(",") == 1 else r + "\n" for r in rows))
    return m


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_http_sources_ok_and_failures_with_reasons(tmp_path: Path, server: str, media: Path) -> None:
    m = _manifest(tmp_path, [f"ok,{server}/ok.mp4", f"gone,{server}/missing.mp4", f"trunc,{server}/trunc.mp4",
                             f"short,{server}/short/x.mp4", f"slow,{server}/slow/x.mp4", f"text,{server}/note.txt",
                             f"busy,{server}/busy.mp4"])
    t0 = time.monotonic()
    report = run(_params(tmp_path, m), LocalExecutor(1))
    elapsed = time.monotonic() - t0
    raw = tmp_path / "raw"
    table = pd.read_parquet(raw / "sources.parquet")
    assert tuple(table.columns) == TABLE_COLUMNS
    assert list(table.source_id) == ["ok", "gone", "trunc", "short", "slow", "text", "busy"]  # manifest order
    by = table.set_index("source_id")
    assert by.loc["ok", "status"] == "ok" and by.loc["ok", "path"] == "ok.mp4"
    assert _sha(raw / "ok.mp4") == _sha(media / "ok.mp4")  # a direct file arrives byte for byte
    assert (by.loc["ok", "width"], by.loc["ok", "height"], by.loc["ok", "n_frames"]) == (160, 96, N_FRAMES)
    reasons = by.reason.to_dict()
    assert "404" in reasons["gone"]
    assert reasons["trunc"].startswith("not a usable video")
    assert "bytes read" in reasons["short"] and "gave up after 2 attempt(s)" in reasons["short"]
    assert reasons["slow"].startswith(f"timed out after {TIMEOUT_S:g}s")
    assert reasons["text"].startswith("not a usable video")
    assert "429" in reasons["busy"]
    assert (by.status == "failed").sum() == 6 and report["ok"] == 1 and report["failed"] == 6
    assert {f["source_id"]: f["reason"] for f in report["failures"]} == {k: v for k, v in reasons.items() if v}
    assert json.loads((raw / "report.json").read_text())["failed"] == 6
    # a 404 is permanent (one request); a short read and a 429 are retried once (an attempt makes as many requests as the
    # successful download of ok.mp4 did: the extractor's probe, then the download)
    assert _Handler.hits["/missing.mp4"] == 1 and _Handler.hits["/short/x.mp4"] == 2 * _Handler.hits["/ok.mp4"]
    assert _Handler.hits["/busy.mp4"] == 2  # 429 (too many requests) is worth a retry, 404 is not
    # only the finished file (+ the resume records) remains; no partial downloads, no work folders
    assert sorted(p.name for p in raw.iterdir()) == [".parts", "ok.mp4", "report.json", "sources.parquet"]
    assert elapsed < 12, elapsed  # the slow source costs ~timeout_s, not its 15 s transfer


def test_rerun_skips_archived_sources(tmp_path: Path, server: str) -> None:
    m = _manifest(tmp_path, [f"a,{server}/ok.mp4?a", f"a.v2,{server}/ok.mp4?b"])
    run(_params(tmp_path, m), LocalExecutor(1))
    out = tmp_path / "raw" / "a.mp4"
    stamp = out.stat().st_mtime_ns
    hits = dict(_Handler.hits)
    report = run(_params(tmp_path, m), LocalExecutor(1))
    assert report["skipped_done"] == 2 and report["ok"] == 2
    assert dict(_Handler.hits) == hits and out.stat().st_mtime_ns == stamp  # no request, no rewrite
    # a damaged output is not trusted: it is fetched again
    out.write_bytes(b"x")
    report = run(_params(tmp_path, m), LocalExecutor(1))
    assert report["skipped_done"] == 1 and _Handler.hits["/ok.mp4?a"] == 2 * hits["/ok.mp4?a"]  # one more fetch
    assert probe(out).n_frames == N_FRAMES
    # a changed row (now a segment) is redone; a removed row's files disappear
    m.write_text(HEADER + f"a,{server}/ok.mp4?a,real,T,CC0,Nobody,,,0.4,1.2\n")
    report = run(_params(tmp_path, m), LocalExecutor(1))
    assert report["skipped_done"] == 0 and probe(out).n_frames == 20
    assert not (tmp_path / "raw" / "a.v2.mp4").exists() and not (tmp_path / "raw" / ".parts" / "a.v2.json").exists()
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [".parts", "a.mp4", "report.json", "sources.parquet"]


def test_local_and_file_sources_segments_and_ground_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    src = tmp_path / "videos" / "clip.mp4"
    write_plain(src, N_FRAMES)
    pd.DataFrame({"frame": np.arange(N_FRAMES), "marker": np.arange(N_FRAMES) * 10}).to_parquet(
        tmp_path / "videos" / "clip.gt.parquet")
    truncate(remux_faststart(src, tmp_path / "fast.mp4"), tmp_path / "videos" / "cut.mp4", 0.6)
    m = _manifest(tmp_path, ["whole,videos/clip.mp4", f"viafile,{src.as_uri()}",
                             "seg,videos/clip.mp4,real,T,CC0,Nobody,,,0.4,1.2", "nofile,videos/none.mp4",
                             "cut,videos/cut.mp4"])
    params = _params(tmp_path, m, out_dir="data/raw", min_success_fraction=0.6)
    params.workers = 2
    report = run(params)  # the default executor: a process pool (work items and settings must pickle)
    raw = tmp_path / "data" / "raw"
    by = pd.read_parquet(raw / "sources.parquet").set_index("source_id")
    assert report["ok"] == 3 and by.loc["nofile", "reason"] == "local file not found: videos/none.mp4"
    # its header promises 50 frames, the data holds fewer: caught by demuxing, not only by probing
    assert by.loc["cut", "reason"].startswith("not a usable video: truncated video videos/cut.mp4: ")
    assert report["failures_by_kind"] == {"missing local file": 1, "not a video or corrupt": 1}
    assert os.stat(raw / "whole.mp4").st_ino == os.stat(src).st_ino  # hard link, no copy
    assert _sha(raw / "viafile.mp4") == _sha(src)
    assert by.loc["whole", "gt_path"] == "whole.gt.parquet" and by.loc["viafile", "gt_path"] == "viafile.gt.parquet"
    # segment [0.4 s, 1.2 s) at 25 fps = source frames 10..29, re-encoded; frame i has grey level 5 * i
    frames = read_frames(raw / "seg.mp4")
    assert len(frames) == 20 and by.loc["seg", "n_frames"] == 20
    assert abs(frames[0].mean() - 50) < 3 and abs(frames[-1].mean() - 145) < 3
    gt = pd.read_parquet(raw / by.loc["seg", "gt_path"])
    assert list(gt.frame) == list(range(20)) and list(gt.marker) == [10 * i for i in range(10, 30)]


def test_file_urls_can_be_disabled(tmp_path: Path) -> None:
    write_plain(tmp_path / "v.mp4", 10)
    m = _manifest(tmp_path, [f"f,{(tmp_path / 'v.mp4').as_uri()}"])
    run(_params(tmp_path, m, enable_file_urls=False), LocalExecutor(1))
    t = pd.read_parquet(tmp_path / "raw" / "sources.parquet")
    assert t.status[0] == "failed" and "file:// urls are disabled" in t.reason[0]


def test_below_min_success_fraction_exits_2(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    m = _manifest(tmp_path, [f"ok,{server}/ok.mp4", f"gone1,{server}/missing1.mp4", f"gone2,{server}/missing2.mp4"])
    args = ["data", "scrape", "--manifest", str(m), "--workers", "1", "--set", "scrape.out_dir=raw",
            "--set", "scrape.retries=0", "--set", "scrape.timeout_s=5"]
    rc = main(args + ["--set", "scrape.min_success_fraction=0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: only 1/3 sources fetched (33% < min_success_fraction 50%)" in err
    assert "Traceback" not in err and "hint: see raw/report.json" in err
    assert json.loads((tmp_path / "raw" / "report.json").read_text())["failed"] == 2  # the report is still written
    assert main(args + ["--set", "scrape.min_success_fraction=0.3"]) == 0


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    m = _manifest(tmp_path, ["x,https://example.org/v.mp4"])
    for kw, needle in [({"rate_limit": "fast"}, "rate_limit"), ({"cookies": str(tmp_path / "none.txt")}, "cookies"),
                       ({"min_success_fraction": 2.0}, "min_success_fraction")]:
        with pytest.raises(UserError, match=needle):
            run(_params(tmp_path, m, **kw), LocalExecutor(1))
    assert not (tmp_path / "raw").exists()


def test_option_like_url_handed_to_ytdlp_is_only_a_bad_url(tmp_path: Path) -> None:
    """Defence in depth behind manifest validation: yt-dlp's API never parses a URL as an option."""
    marker = tmp_path / "pwned"
    settings = FetchSettings.from_params(ScrapeParams(out_dir=str(tmp_path / "raw"), retries=0, timeout_s=30),
                                         root=tmp_path)
    for url in (f"--exec touch {marker}", f"-o{marker}", f"--output {marker} https://127.0.0.1:9/x.mp4"):
        with pytest.raises(SourceFailed, match="is not a valid URL"):
            download(url, tmp_path / "raw" / ".work" / "x", settings)
    assert not marker.exists()
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == ["raw", "raw/.work", "raw/.work/x"]


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(tmp_path: Path, server: str) -> None:
    """kill -9 in the middle of a scrape, rerun: same table, same files as a run that was never interrupted."""
    runs = {}
    for name in ("killed", "clean"):
        d = tmp_path / name
        (d / "videos").mkdir(parents=True)
        for i in range(3):
            write_plain(d / "videos" / f"v{i}.mp4", 20 + 10 * i)
        m = _manifest(d, [f"v{i},videos/v{i}.mp4" for i in range(3)] + [f"web,{server}/once-slow/{name}.mp4"])
        cmd = [sys.executable, "-m", "toontalker_bench", "data", "scrape", "--manifest", str(m), "--workers", "1",
               "--set", "scrape.out_dir=raw", "--set", "scrape.timeout_s=120"]
        if name == "clean":
            _Handler.hits[f"/once-slow/{name}.mp4"] = 1  # served at once: this run is never interrupted
        else:
            proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            deadline = time.monotonic() + 60
            while _Handler.hits[f"/once-slow/{name}.mp4"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # local sources come first; the web source now hangs on its first request
            assert proc.poll() is None, "scrape ended before it could be killed"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert not (d / "raw" / "sources.parquet").exists() and (d / "raw" / ".parts" / "v2.json").exists()
        subprocess.run(cmd, cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        runs[name] = d / "raw"
    killed, clean = (pd.read_parquet(runs[k] / "sources.parquet") for k in ("killed", "clean"))
    killed.url, clean.url = killed.url.str.replace("killed", "X"), clean.url.str.replace("clean", "X")
    assert killed.equals(clean) and (killed.status == "ok").all()
    tree_k, tree_c = _tree(runs["killed"]), _tree(runs["clean"])
    tree_k.pop("sources.parquet"), tree_c.pop("sources.parquet")  # compared above (the URLs differ)
    assert tree_k.keys() == tree_c.keys()
    for f in tree_k:
        if f == ".parts/web.json":  # its key hashes the URL, which names the run; the rest is equal
            entry_k, entry_c = (json.loads((runs[k] / f).read_text()) for k in ("killed", "clean"))
            entry_k.pop("key"), entry_c.pop("key")
            assert entry_k == entry_c, f
        else:
            assert tree_k[f] == tree_c[f], f


def test_ytdlp_options_pass_settings_through(tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    p = ScrapeParams(out_dir=str(tmp_path), max_height=480, rate_limit="2M", proxy="socks5://127.0.0.1:1080",
                     cookies=str(cookies), socket_timeout_s=7.0, enable_file_urls=False)
    opts = ytdlp_options(tmp_path / "w", FetchSettings.from_params(p), hook=print)
    assert opts["ratelimit"] == 2 * 1024 * 1024 and opts["proxy"] == "socks5://127.0.0.1:1080"
    assert opts["cookiefile"] == str(cookies) and opts["socket_timeout"] == 7.0 and opts["enable_file_urls"] is False
    assert "[height<=?480]" in opts["format"] and "720" not in opts["format"]
    assert Path(opts["ffmpeg_location"]).is_file() and opts["default_search"] == "error"
    assert opts["outtmpl"] == str(tmp_path / "w" / "video.%(ext)s") and opts["progress_hooks"] == [print]
