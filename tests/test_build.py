"""Build stage: identity-disjoint split, HF round trips (load_from_disk and the parquet shards), protocol pairs."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_dataset import build_fixture_dataset

from toontalker_bench.core.config import Params
from toontalker_bench.core.errors import DatasetError, UserError
from toontalker_bench.core.io import write_table
from toontalker_bench.data import build
from toontalker_bench.data.protocol import TASKS, make_pairs


def _clips(n_ids: dict[str, int], per_id: int = 2) -> pd.DataFrame:
    rows = []
    for dom, n in n_ids.items():
        for i in range(n):
            for k in range(per_id + i % 3):
                rows.append({"clip_id": f"{dom}-{i}-{k}", "domain": dom, "identity": f"{dom}-id{i}",
                             "source_id": f"{dom}-src{i}", "n_frames": 64 + 10 * k, "fps": 25.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("n_ids", [{"real": 5, "cartoon": 9}, {"real": 2, "cartoon": 3}])
def test_split_is_identity_disjoint_and_covers_both_domains(seed: int, n_ids: dict[str, int]) -> None:
    clips = _clips(n_ids)
    split = build.split_identities(clips, 0.3, seed)
    clips = clips.assign(split=split)
    for dom in ("real", "cartoon"):
        sub = clips[clips.domain == dom]
        train_ids = set(sub[sub.split == "train"].identity)
        test_ids = set(sub[sub.split == "test"].identity)
        assert train_ids and test_ids and not train_ids & test_ids
        assert train_ids | test_ids == set(sub.identity)
    assert split.tolist() == build.split_identities(_clips(n_ids), 0.3, seed).tolist()  # seeded


def test_split_fraction_and_single_identity() -> None:
    clips = _clips({"real": 20, "cartoon": 1})
    split = build.split_identities(clips, 0.3, 0)
    real = clips.domain == "real"
    frac = (split[real] == "test").mean()
    assert abs(frac - 0.3) <= 2 / real.sum()  # within half the largest identity (4 clips) of the target
    assert (split[~real] == "train").all()  # one identity: it cannot be on both sides, it trains


def test_forced_split_is_honoured() -> None:
    clips = _clips({"real": 4, "cartoon": 4})
    forced = {("real", "real-id0"): "test", ("cartoon", "cartoon-id3"): "train"}
    split = build.split_identities(clips, 0.3, 0, forced)
    assert (split[clips.identity == "real-id0"] == "test").all()
    assert (split[clips.identity == "cartoon-id3"] == "train").all()


def test_pairs_schema_and_rules() -> None:
    clips = _clips({"real": 6, "cartoon": 6}).assign(split=lambda d: np.where(d.index % 3 == 0, "test", "train"))
    pairs = make_pairs(clips, pairs_per_task=5, pair_frames=32, seed=3)
    assert list(pairs.columns) == ["task", "pair_id", "source_clip", "source_frame", "driving_clip",
                                   "driving_start", "n_frames", "motion_range_deg", "motion_source",
                                   "below_threshold"]
    assert pairs.groupby("task").size().to_dict() == {t: 5 for t in TASKS}
    test = clips[clips.split == "test"].set_index("clip_id")
    for r in pairs.itertuples():
        src_dom, drv_dom = TASKS[r.task]
        assert test.loc[r.source_clip, "domain"] == src_dom and test.loc[r.driving_clip, "domain"] == drv_dom
        assert 0 <= r.driving_start and r.driving_start + r.n_frames <= test.loc[r.driving_clip, "n_frames"]
        if src_dom == drv_dom:
            assert r.source_clip == r.driving_clip and r.source_frame == r.driving_start
    pd.testing.assert_frame_equal(pairs, make_pairs(clips, 5, 32, 3))
    assert not pairs.equals(make_pairs(clips, 5, 32, 4))


def test_driving_windows_are_chosen_where_the_head_moves() -> None:
    """Known head motion per clip: still clips never drive, a window's motion range is its largest yaw/pitch/roll
    excursion, and with no clip moving enough each clip's most moving window is used and marked."""
    clips = _clips({"real": 4, "cartoon": 4}).assign(split="test", n_frames=100)

    def motion(row: pd.Series) -> tuple[np.ndarray, str]:
        k = int(str(row["clip_id"])[-1])
        angles = np.zeros((100, 3))
        if k % 2:  # odd clips turn their head (yaw) by 20 degrees between frames 50 and 70, and nowhere else
            angles[50:70, 0] = np.linspace(0, 20, 20)
            angles[70:, 0] = 20
        return angles, "ground_truth"

    pairs = make_pairs(clips, pairs_per_task=6, pair_frames=32, seed=0, min_motion_deg=10.0, motion=motion)
    assert len(pairs) == 6 * len(TASKS) and not pairs["below_threshold"].any()
    assert set(int(c[-1]) % 2 for c in pairs["driving_clip"]) == {1}  # only moving clips drive
    assert (pairs["motion_range_deg"] >= 10).all() and (pairs["motion_source"] == "ground_truth").all()
    for r in pairs.itertuples():  # the window overlaps the turn enough to see 10 degrees of it
        assert r.driving_start + r.n_frames > 60 and r.driving_start < 60
    still = make_pairs(clips, pairs_per_task=2, pair_frames=32, seed=0, min_motion_deg=50.0, motion=motion)
    assert still["below_threshold"].all() and set(still["motion_range_deg"]) <= {0.0, 20.0}


def test_neutral_cross_starts_begin_with_a_closed_mouth() -> None:
    """``cross_start="neutral"``: a cross-domain driving window starts where the driver's mouth is among the least
    open of its clip's eligible starts; self-reenactment pairs are drawn as before."""
    clips = _clips({"real": 4, "cartoon": 4}).assign(split="test", n_frames=100)

    def motion(row: pd.Series) -> tuple[np.ndarray, str]:
        return np.c_[np.linspace(0, 40, 100), np.zeros((100, 2))], "ground_truth"  # every window turns the head

    def opening(row: pd.Series) -> np.ndarray:  # the mouth is closed at frame 24 and opens away from it
        return np.abs(np.arange(100) - 24) / 100

    kwargs = dict(pairs_per_task=6, pair_frames=32, seed=0, min_motion_deg=5.0, motion=motion)
    anywhere = make_pairs(clips, **kwargs)
    neutral = make_pairs(clips, **kwargs, cross_start="neutral", opening=opening)
    cross = neutral["task"].isin(["real2cartoon", "cartoon2real"])
    # 18 candidate starts (every 4 frames): the least open quarter lies within 8 frames of frame 24
    assert neutral.loc[cross, "driving_start"].between(16, 32).all()
    assert not anywhere.loc[cross, "driving_start"].between(16, 32).all()
    pd.testing.assert_frame_equal(neutral[~cross], anywhere[~cross])
    with pytest.raises(ValueError, match="opening"):
        make_pairs(clips, **kwargs, cross_start="neutral")
    with pytest.raises(ValueError, match="cross_start"):
        make_pairs(clips, **kwargs, cross_start="closed")


def test_a_protocol_spec_without_cross_start_draws_as_version_2(tmp_path: Path) -> None:
    """``protocol_pairs`` redraws a built protocol from its ``protocol.json``: a spec before version 3 has no
    ``cross_start`` and meant ``any``; version 3 specs name theirs."""
    from toontalker_bench.data.protocol import protocol_pairs

    clips = _clips({"real": 3, "cartoon": 3}).assign(split="test", n_frames=80)
    for c in clips["clip_id"]:  # stored landmarks whose mouth opens with the frame index; no ground truth motion
        lm = np.zeros((80, 68, 2))
        lm[:, 36:42, 0], lm[:, 42:48, 0] = 0.0, 1.0
        lm[:, 61:64, 1] = np.arange(80)[:, None] / 80
        np.savez(tmp_path / f"{c}.npz", landmarks68=lm, motion=np.full((80, 20), np.nan))
    clips["path"] = clips["clip_id"] + ".mp4"
    spec = {"pairs_per_task": 4, "pair_frames": 16, "min_motion_deg": 0.0}
    old = protocol_pairs(clips, tmp_path, spec)
    kwargs = dict(pairs_per_task=4, pair_frames=16, seed=0, min_motion_deg=0.0)
    pd.testing.assert_frame_equal(old[["task", "driving_clip", "driving_start"]],
                                  make_pairs(clips, **kwargs)[["task", "driving_clip", "driving_start"]])
    new = protocol_pairs(clips, tmp_path, {**spec, "cross_start": "neutral"})
    cross = new["task"].isin(["real2cartoon", "cartoon2real"])
    assert new.loc[cross, "driving_start"].max() < old.loc[cross, "driving_start"].max()


def test_mouth_opening_from_landmarks() -> None:
    from toontalker_bench.data.protocol import mouth_opening

    lm = np.zeros((2, 68, 2))
    lm[:, 36:42] = [0.0, 0.0]
    lm[:, 42:48] = [10.0, 0.0]  # eye centres 10 apart
    lm[1, 65:68, 1] = 3.0  # lower inner lip 3 below the upper one on the second frame
    assert mouth_opening(lm) == pytest.approx([0.0, 0.3])


def _aligned_inputs(root: Path) -> Params:
    """A small ``data/clips`` + ``data/raw`` + ``data/tubes`` layout made from the shared fixture clips."""
    fx = build_fixture_dataset(root / "fx", size=32, n_frames=12, train_clips=3, test_clips=2, with_protocol=False)
    clips = pd.read_parquet(fx / "clips.parquet").drop(columns=["split"])
    # fixture identities are unique per clip; give some clips a shared identity to exercise the split
    clips["identity"] = [f"{d}-person{i % 3}" for i, d in enumerate(clips.domain)]
    clips["path"] = clips.clip_id + ".mp4"
    clips = clips.assign(shot=0, start_frame=0, end_frame=clips.n_frames, median_face_px=50.0)
    write_table(fx / "clips" / "clips.parquet", clips)
    sources = pd.DataFrame({"source_id": clips.source_id, "domain": clips.domain, "url": "file:///x.mp4",
                            "title": "fixture | video", "license": "CC-BY-4.0", "attribution": "Fixture Author",
                            "identity": clips.identity, "split": "", "status": "ok", "reason": "",
                            "path": "x.mp4", "gt_path": ""})
    sources = pd.concat([sources, pd.DataFrame([{**sources.iloc[0].to_dict(), "source_id": "gone",
                                                  "status": "failed", "reason": "HTTP 404"}])])
    write_table(root / "raw" / "sources.parquet", sources)
    write_table(root / "tubes" / "rejects.parquet", pd.DataFrame(
        {"source_id": ["a", "a", "b"], "shot": [0, 1, 0], "tube_id": ["", "t", ""], "start_frame": [0, 0, 0],
         "end_frame": [1, 1, 1], "reason": ["no_face", "too_short", "no_face"], "detail": ""}))
    p = Params()
    p.scrape.out_dir, p.tubes.out_dir = str(root / "raw"), str(root / "tubes")
    p.align.out_dir, p.build.out_dir = str(fx / "clips"), str(root / "dataset")
    p.build.test_fraction, p.build.pairs_per_task, p.build.pair_frames = 0.4, 3, 8
    return p


def test_build_outputs_and_round_trips(tmp_path: Path) -> None:
    from datasets import load_dataset, load_from_disk

    p = _aligned_inputs(tmp_path)
    stats = build.run(p)
    out = Path(p.build.out_dir)
    df = pd.read_parquet(out / "clips.parquet")
    assert len(df) == 10 and set(df.split) == {"train", "test"}
    for dom in ("real", "cartoon"):
        sub = df[df.domain == dom]
        assert not set(sub[sub.split == "train"].identity) & set(sub[sub.split == "test"].identity)
        assert stats[f"{dom}_train"]["clips"] + stats[f"{dom}_test"]["clips"] == 5
    assert stats["rejects"] == {"no_face": 2, "too_short": 1} and stats["failed_sources"] == 1
    src_clips = Path(p.align.out_dir)
    digest = {r.clip_id: hashlib.sha256((src_clips / f"{r.clip_id}.mp4").read_bytes()).hexdigest()
              for r in df.itertuples()}
    for r in df.itertuples():
        assert (out / r.path).is_file() and (out / r.path).with_suffix(".npz").is_file()

    dd = load_from_disk(str(out / "hf"))
    assert {s: len(dd[s]) for s in dd} == df.split.value_counts().to_dict()
    for row in dd["test"]:
        assert hashlib.sha256(row["video"]).hexdigest() == digest[row["clip_id"]]
        ann = np.load(io.BytesIO(row["annotations"]))
        np.testing.assert_array_equal(ann["landmarks68"], np.load(src_clips / f"{row['clip_id']}.npz")["landmarks68"])
        assert row["first_frame"].size == (32, 32)

    # the parquet shards alone (copied elsewhere, the build folder deleted) hold everything
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in (out / "parquet").iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    import shutil

    shutil.rmtree(out)
    shutil.rmtree(src_clips)
    shards = load_dataset("parquet", data_files={"train": str(moved / "train-*.parquet"),
                                                 "test": str(moved / "test-*.parquet")})
    assert sum(len(shards[s]) for s in shards) == 10
    for s in shards:
        for row in shards[s]:
            assert hashlib.sha256(row["video"]).hexdigest() == digest[row["clip_id"]]


def _tree(folder: Path) -> dict[str, bytes]:
    return {f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_build_card_stats_pairs_and_rerun(tmp_path: Path) -> None:
    p = _aligned_inputs(tmp_path)
    build.run(p)
    out = Path(p.build.out_dir)
    card = (out / "README.md").read_text()
    assert "CC-BY-4.0" in card and "Fixture Author" in card and "fixture \\| video" in card
    assert build.params_hash(p) in card and "dvc repro" in card
    stats = json.loads((out / "stats.json").read_text())
    pairs = pd.read_parquet(out / "protocol" / "pairs.parquet")
    assert stats["pairs"] == pairs.groupby("task").size().to_dict()
    assert (out / "contact_sheet_real.png").is_file() and (out / "contact_sheet_cartoon.png").is_file()
    sizes = pd.read_csv(out / "plots" / "face_size.csv")  # every fixture face is 50 px: bin [48, 64)
    assert list(sizes.columns) == ["face_px", "real", "cartoon"]
    assert sizes.set_index("face_px").loc[48].tolist() == [5, 5] and sizes[["real", "cartoon"]].sum().sum() == 10
    lengths = pd.read_csv(out / "plots" / "clip_length.csv")  # 12 frames at 25 fps = 0.48 s: bin 0
    assert lengths.set_index("seconds").loc[0].tolist() == [5, 5]
    umask = os.umask(0)
    os.umask(umask)
    for d in ("clips", "hf", "parquet", "protocol"):  # like mkdir, not mkdtemp's 0700
        assert (out / d).stat().st_mode & 0o777 == 0o777 & ~umask, d
    first = _tree(out)
    # what a killed build leaves behind: an empty temporary table, a half-written folder
    (out / ".clips.parquet.tmp-k1ll3d.parquet").write_bytes(b"")
    (out / ".hf.tmp-k1ll3d" / "train").mkdir(parents=True)
    (out / ".hf.tmp-k1ll3d" / "train" / "data-00000-of-00001.arrow").write_bytes(b"half")
    build.run(p)
    assert _tree(out) == first  # every file byte for byte, the temporaries gone
    assert not [f for f in out.iterdir() if ".tmp-" in f.name or f.name.endswith(".old")]


def test_push_to_hub_offline_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError):
        build.push_to_hub(tmp_path, "user/repo")
    (tmp_path / "hf").mkdir()
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        build.push_to_hub(tmp_path, "user/repo")


def test_forced_split_conflict_is_a_user_error() -> None:
    clips = _clips({"real": 1, "cartoon": 0}, per_id=2)
    clips.loc[1, "source_id"] = "real-src-b"
    sources = pd.DataFrame({"source_id": ["real-src0", "real-src-b"], "split": ["train", "test"]})
    with pytest.raises(DatasetError, match="both train and test"):
        build._forced_splits(clips, sources)
