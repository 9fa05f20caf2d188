"""Manifest validation (row-numbered errors, injection-proof URLs, paths that stay inside the repo) and importers."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest

from toontalker_bench.cli import main
from toontalker_bench.core.errors import ManifestError
from toontalker_bench.data.importers import import_manifest
from toontalker_bench.data.manifest import COLUMNS, read_manifest, read_manifests

HEADER = "source_id,url,domain,title,license,attribution,identity,split,start,end\n"
GOOD = "clip1,https://example.org/a.mp4,real,A,CC-BY-4.0,Someone,p1,train,1.5,4\n"
REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, body: str, name: str = "m.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + body)
    return p


def test_good_rows_parse(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    m = _write(tmp_path, GOOD + "clip2,videos/b.mp4,cartoon,B,CC-BY-4.0,Studio,,,,\n"
                       "clip3,file:///srv/c.mp4,cartoon,C,CC0,Me,,test,,\n")
    a, b, c = read_manifest(m, root=tmp_path)
    assert (a.source_id, a.domain, a.start, a.end, a.identity, a.split) == ("clip1", "real", 1.5, 4.0, "p1", "train")
    assert a.kind == "remote" and b.kind == "local" and c.kind == "file"
    assert math.isnan(b.start) and math.isnan(b.end) and not b.has_segment and a.has_segment


@pytest.mark.parametrize("row, needle", [
    ("x,https://e.org/v,toon,T,L,A,,,,\n", "unknown domain 'toon'"),
    ("x,https://e.org/v,real,T,L,A,,,5,5\n", "end 5 <= start 5"),
    ("x,https://e.org/v,real,T,L,A,,,7,2\n", "end 2 <= start 7"),
    ("x,https://e.org/v,real,T,L,A,,,abc,\n", "start 'abc' is not a number"),
    ("x,https://e.org/v,real,T,L,A,,,-1,\n", "start '-1' must be a finite number >= 0"),
    ("x,ftp://e.org/v,real,T,L,A,,,,\n", "scheme 'ftp' is not supported"),
    ("x,ytsearch:cats,real,T,L,A,,,,\n", "scheme 'ytsearch' is not supported"),
    ("x,http://,real,T,L,A,,,,\n", "has no host"),
    ("x,--exec rm -rf ~,real,T,L,A,,,,\n", "starts with '-'"),
    ("x,-o/tmp/evil,real,T,L,A,,,,\n", "starts with '-'"),
    ("x,../outside.mp4,real,T,L,A,,,,\n", "escapes the repository root"),
    ("x,videos/../../outside.mp4,real,T,L,A,,,,\n", "escapes the repository root"),
    ("x,/etc/passwd,real,T,L,A,,,,\n", "is absolute"),
    ("x,file://host/etc/passwd,real,T,L,A,,,,\n", "file:///absolute/path"),
    ("../evil,https://e.org/v,real,T,L,A,,,,\n", "'../evil' is not a safe file name"),
    ("a/b,https://e.org/v,real,T,L,A,,,,\n", "'a/b' is not a safe file name"),
    (".hidden,https://e.org/v,real,T,L,A,,,,\n", "'.hidden' is not a safe file name"),
    ("x,https://e.org/v,real,,L,A,,,,\n", "empty title"),
    ("x,https://e.org/v,real,T,L,A,,valid,,\n", "unknown split 'valid'"),
])
def test_bad_row_names_its_line(tmp_path: Path, row: str, needle: str) -> None:
    m = _write(tmp_path, GOOD + row)  # the bad row is CSV line 3 (header = line 1)
    with pytest.raises(ManifestError) as e:
        read_manifest(m, root=tmp_path)
    msg = str(e.value)
    assert f"{m} line 3: " in msg and needle in msg, msg
    assert "\n" not in msg and "line 2" not in msg


def test_all_bad_rows_reported_together(tmp_path: Path) -> None:
    m = _write(tmp_path, "a,https://e.org/v,toon,T,L,A,,,,\n" + GOOD + "b,https://e.org/v,real,T,L,A,,,3,1\n")
    with pytest.raises(ManifestError, match=r"2 invalid manifest row\(s\): .*line 2: unknown domain.*line 4: end 1"):
        read_manifest(m, root=tmp_path)


def test_duplicate_ids_across_manifests_and_case(tmp_path: Path) -> None:
    m1 = _write(tmp_path, GOOD, "one.csv")
    m2 = _write(tmp_path, GOOD.replace("clip1", "CLIP1"), "two.csv")
    with pytest.raises(ManifestError, match=r"two.csv line 2: duplicate source_id 'CLIP1' \(first at .*one.csv line 2\)"):
        read_manifests([m1, m2], root=tmp_path)


def test_nul_byte_and_unreadable_files_give_one_line(tmp_path: Path) -> None:
    nul = tmp_path / "nul.csv"
    nul.write_text(HEADER + GOOD.replace("Someone", "Some\x00one"))
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    missing_cols = tmp_path / "cols.csv"
    missing_cols.write_text("source_id,url\nx,https://e.org/v\n")
    extra_field = _write(tmp_path, GOOD.strip() + ",surplus\n", "extra.csv")
    cases = [(nul, "line 2: NUL byte"), (binary, "is not UTF-8"), (tmp_path / "nope.csv", "cannot read manifest"),
             (tmp_path, "cannot read manifest"), (missing_cols, "lacks column(s) domain, title"),
             (extra_field, "line 2: more fields than columns")]
    for path, needle in cases:
        with pytest.raises(ManifestError) as e:
            read_manifest(path, root=tmp_path)
        assert needle in str(e.value) and "\n" not in str(e.value), (path, str(e.value))


def test_option_like_url_via_cli_exits_2_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    m = _write(tmp_path, "evil,--exec rm -rf ~,real,T,L,A,,,,\n" + GOOD)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["data", "scrape", "--manifest", str(m), "--set", "scrape.out_dir=data/raw", "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "line 2: url '--exec rm -rf ~' starts with '-'" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # not even data/raw was created


# --------------------------------------------------------------------------------------------------- importers
VOX2_TXT = """Identity  : \tid00012
Reference : \t21Uxsk56VDQ
Offset    : \t1
FV Conf   : \t17.497\t(1)
ASD Conf  : \t5.642

FRAME \tX \tY \tW \tH \n000140 \t0.451 \t0.102 \t0.180 \t0.320 \n000141 \t0.455 \t0.100 \t0.182 \t0.322 \n000239 \t0.470 \t0.110 \t0.170 \t0.318 \n"""

VOX1_TXT = """Identity  : \tid10270
Reference : \t5r0dWxy17C8
Offset    : \t-2
FV Conf   : \t12.251\t(1)

FRAME \tX \tY \tW \tH \n000375 \t264 \t72 \t96 \t128 \n000376 \t260 \t70 \t100 \t130 \n000470 \t270 \t80 \t90 \t120 \n"""


def test_import_vox_folder_and_zip(tmp_path: Path) -> None:
    root = tmp_path / "txt"
    (root / "dev" / "id00012" / "21Uxsk56VDQ").mkdir(parents=True)
    (root / "dev" / "id00012" / "21Uxsk56VDQ" / "00001.txt").write_text(VOX2_TXT)
    (root / "test" / "id10270" / "5r0dWxy17C8").mkdir(parents=True)
    (root / "test" / "id10270" / "5r0dWxy17C8" / "00003.txt").write_text(VOX1_TXT)
    (root / "test" / "id10270" / "5r0dWxy17C8" / "00004.txt").write_text("Identity : id10270\nno table\n")
    out = tmp_path / "vox.csv"
    res = import_manifest("vox", root, out)
    assert res["rows"] == 2 and len(res["skipped"]) == 1 and "00004.txt: no Reference line" in res["skipped"][0]
    rows = {s.source_id: s for s in read_manifest(out, root=tmp_path)}
    v2 = rows["vox-id00012-21Uxsk56VDQ-00001"]
    assert v2.url == "https://www.youtube.com/watch?v=21Uxsk56VDQ" and v2.domain == "real"
    assert (v2.identity, v2.split) == ("id00012", "train")
    assert v2.start == pytest.approx(140 / 25) and v2.end == pytest.approx(240 / 25)
    # union of the normalised boxes: x0=min x, y0=min y, x1=max(x+w), y1=max(y+h)
    assert v2.box == pytest.approx((0.451, 0.100, 0.640, 0.428), abs=1e-4)
    v1 = rows["vox-id10270-5r0dWxy17C8-00003"]
    assert v1.split == "test" and v1.start == pytest.approx(15.0) and v1.end == pytest.approx(471 / 25)
    # VoxCeleb1 pixels of a 640x360 reference frame
    assert v1.box == pytest.approx((260 / 640, 70 / 360, 360 / 640, 200 / 360), abs=1e-4)

    z = tmp_path / "vox_txt.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("txt/id00012/21Uxsk56VDQ/00001.txt", VOX2_TXT)
    import_manifest("vox", z, tmp_path / "z.csv")
    assert [s.source_id for s in read_manifest(tmp_path / "z.csv")] == ["vox-id00012-21Uxsk56VDQ-00001"]


def test_import_celebvhq(tmp_path: Path) -> None:
    info = {"meta_info": {"appearance_mapping": [], "action_mapping": []}, "clips": {
        "-0uLmUIkk2c_0": {"ytb_id": "-0uLmUIkk2c", "duration": {"start_sec": 12.4, "end_sec": 19.08},
                          "bbox": {"top": 0.1, "bottom": 0.6, "left": 0.3, "right": 0.62},
                          "attributes": {"appearance": [0] * 40, "action": [0] * 35, "emotion": {"labels": "neutral"}},
                          "version": "v0.1"},
        "zzzzzzzzzzz_1": {"ytb_id": "zzzzzzzzzzz", "duration": {"start_sec": 5, "end_sec": 3},
                          "bbox": {"top": 0.1, "bottom": 0.6, "left": 0.3, "right": 0.62}},
        "broken_2": {"ytb_id": "abcdefghijk", "duration": {"start_sec": 1}},
    }}
    p = tmp_path / "celebvhq_info.json"
    p.write_text(json.dumps(info))
    with pytest.raises(ManifestError, match="end 3 <= start 5"):  # the written manifest is validated too
        import_manifest("celebvhq", p, tmp_path / "c.csv")
    del info["clips"]["zzzzzzzzzzz_1"]
    p.write_text(json.dumps(info))
    res = import_manifest("celebvhq", p, tmp_path / "c.csv")
    assert res["rows"] == 1 and res["skipped"] == ["broken_2: missing or bad field 'end_sec'"]
    (s,) = read_manifest(tmp_path / "c.csv")
    assert s.source_id == "celebvhq--0uLmUIkk2c_0" and s.url.endswith("watch?v=-0uLmUIkk2c")
    assert (s.start, s.end) == (12.4, 19.08) and s.box == pytest.approx((0.3, 0.1, 0.62, 0.6))
    assert not s.url.startswith("-")


def test_import_hdtf(tmp_path: Path) -> None:
    d = tmp_path / "HDTF_dataset"
    d.mkdir()
    (d / "RD_video_url.txt").write_text("Radio11 https://www.youtube.com/watch?v=AAAAAAAAAAA\n"
                                        "Radio24 https://www.youtube.com/watch?v=BBBBBBBBBBB\n")
    (d / "RD_annotion_time.txt").write_text("Radio11.mp4 00:30-01:00 01:30-02:30\n")
    (d / "RD_crop_wh.txt").write_text("Radio11_0.mp4 412 599 0 599\nRadio11_1.mp4 557 478 0 478\n")
    (d / "RD_resolution.txt").write_text("Radio11.mp4 720\n")
    (d / "WDA_video_url.txt").write_text("BarackObama_000 https://www.youtube.com/watch?v=CCCCCCCCCCC\n")
    (d / "WDA_annotion_time.txt").write_text("BarackObama_000.mp4 1:02:03-1:02:33\n")
    res = import_manifest("hdtf", d, tmp_path / "h.csv")
    assert res["rows"] == 3 and res["skipped"] == ["RD/Radio24: no annotated time stamps"]
    rows = {s.source_id: s for s in read_manifest(tmp_path / "h.csv")}
    a, b, c = rows["hdtf-RD_Radio11_0"], rows["hdtf-RD_Radio11_1"], rows["hdtf-WDA_BarackObama_000_0"]
    assert (a.start, a.end, b.start, b.end) == (30, 60, 90, 150)
    assert a.box == pytest.approx((412 / 1280, 0, 1011 / 1280, 599 / 720), abs=1e-4)
    assert (c.start, c.end, c.identity, c.box) == (3723, 3753, "BarackObama", ())
    assert a.identity == "Radio11"


def test_import_cli_and_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "00001.txt"
    f.write_text(VOX2_TXT)
    out = tmp_path / "one.csv"
    assert main(["data", "import-manifest", "--format", "vox", str(f), "--out", str(out)]) == 0
    assert "wrote 1 rows" in capsys.readouterr().out
    assert out.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert main(["data", "import-manifest", "--format", "celebvhq", str(f), "--out", str(out)]) == 2
    assert "cannot read CelebV-HQ metadata" in capsys.readouterr().err


def test_shipped_manifests_validate() -> None:
    for m in sorted((REPO / "manifests").glob("*.csv")):
        sources = read_manifest(m, root=REPO)
        assert sources and all(s.license and s.attribution for s in sources), m
    movies = read_manifest(REPO / "manifests" / "cartoon-open-movies.csv", root=REPO)
    assert {s.domain for s in movies} >= {"cartoon"} and all(s.kind == "remote" for s in movies)
    assert len(movies) >= 8 and len({s.url for s in movies}) == len(movies)


FOMM = REPO / "tests" / "fixtures" / "fomm"  # real rows of AliaksandrSiarohin/video-preprocessing's metadata (ac40aac)


def test_import_fomm_vox_metadata(tmp_path: Path) -> None:
    out = tmp_path / "vox.csv"
    res = import_manifest("fomm-csv", FOMM / "vox-metadata.csv", out)
    assert res["rows"] == 12 and res["skipped"] == ["line 10: repeats line 9 (00C50DI8uZU frames 3651-3739)"]
    rows = {s.source_id: s for s in read_manifest(out)}
    s = rows["vox-id10005-WMh3ye5tBsE-003657-003994"]
    assert s.url == "https://www.youtube.com/watch?v=WMh3ye5tBsE" and s.domain == "real"
    assert (s.identity, s.split, s.start, s.end) == ("id10005", "train", 3657 / 25, 3994 / 25)
    assert s.box == pytest.approx((624 / 1280, 48 / 720, 1018 / 1280, 553 / 720), abs=1e-4)
    assert rows["vox-id10004-6WxS8rpNjmk-011278-011461"].box == pytest.approx(
        (249 / 640, 23 / 356, 495 / 640, 335 / 356), abs=1e-4)  # a 640x356 source
    assert rows["vox-id10001-DtdEYdViWdw-000066-000172"].box[3] == 1.0  # y1 776 of 720: clipped to the frame
    test = sorted(s.source_id for s in rows.values() if s.split == "test")
    assert test == ["vox-id10280-NXjT3732Ekg-001093-001192", "vox-id10280-XiKRlssBw2M-000330-001148",
                    "vox-id10280-XiKRlssBw2M-001538-002000", "vox-id10284-Uzxv7Axh3Z8-019680-019858"]
    assert {s.identity for s in rows.values()} == {"id10001", "id10003", "id10004", "id10005", "id10280", "id10284",
                                                   "id10982"}


def test_import_fomm_taichi_and_frames_survive_the_seconds(tmp_path: Path) -> None:
    """start/end are frame numbers at the CSV's fps; written as seconds (ms) they must still select exactly those
    frames under the scrape stage's rule (a frame at t is kept when start - half a frame <= t < end - half a frame)."""
    import csv

    out = tmp_path / "taichi.csv"
    res = import_manifest("fomm-csv", FOMM / "taichi-metadata.csv", out)
    assert res["rows"] == 7 and res["skipped"] == []
    rows = read_manifest(out)
    by_id = {s.source_id: s for s in rows}
    s = by_id["taichi-u6rJiF-gPx8-000080-000300"]
    assert (s.identity, s.split) == ("u6rJiF-gPx8", "train")  # TaiChi has no identities: the video stands in
    assert by_id["taichi-uEqWZ9S_-Lw-000089-000581"].split == "test"
    portrait = by_id["taichi-nLEzl5ntdeQ-000149-000431"]  # an 810x1440 source
    assert portrait.box == pytest.approx((85 / 810, 379 / 1440, 731 / 810, 1025 / 1440), abs=1e-4)
    with open(FOMM / "taichi-metadata.csv") as f:
        for r, s in zip(csv.DictReader(f), rows):
            fps, a, b = float(r["fps"]), int(r["start"]), int(r["end"])
            half = 0.5 / fps
            kept = [i for i in range(b + 50) if s.start - half <= i / fps < s.end - half]
            assert kept == list(range(a, b)), (r, s.start, s.end)


def test_vox_format_reads_fomm_metadata_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.csv"
    assert main(["data", "import-manifest", "--format", "vox", str(FOMM / "vox-metadata.csv"), "--out", str(out)]) == 0
    assert "wrote 12 rows" in capsys.readouterr().out
    assert main(["data", "import-manifest", "--format", "fomm-csv", str(FOMM / "taichi-metadata.csv"),
                 "--out", str(out)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,start,end,bbox,fps,width,height,partition\nAAAAAAAAAAA,10,5,1-2-3-4,25,640,360,train\n"
                   "BBBBBBBBBBB,0,50,1-2-300-200,25,640,360,val\nCCCCCCCCCCC,0,50,1-2-x-4,25,640,360,train\n")
    with pytest.raises(ManifestError, match="no usable entries"):
        import_manifest("fomm-csv", bad, tmp_path / "b.csv")
    from toontalker_bench.data.importers import import_fomm_csv

    assert [m.split(":")[0] for m in import_fomm_csv(bad)[1]] == ["line 2", "line 3", "line 4"]
    with pytest.raises(ManifestError, match="not first-order-model metadata"):
        import_manifest("fomm-csv", REPO / "manifests" / "demo.csv", tmp_path / "c.csv")
