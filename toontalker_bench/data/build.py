"""The ``build`` stage: aligned clips -> the versioned dataset in ``data/dataset/``.

Identity-disjoint seeded train/test split, the clip table, clip files, a Hugging Face ``DatasetDict`` (``hf/``) and
self-contained parquet shards (``parquet/``: mp4 and annotation bytes live in the rows), the evaluation protocol,
DVC metrics and plots, contact sheets and the dataset card. Every file is written atomically; directories are built
beside their final place and swapped in, so a killed build leaves the previous complete output or none.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.config import Params, data_sections, to_dict, view
from ..core.domains import DOMAINS, TASKS
from ..core.errors import DatasetError, UserError
from ..core.executors import Executor
from ..core.io import atomic_dir, read_table, write_bytes, write_json, write_table, write_text
from ..core.video import iter_frames
from .corpus_check import card_lines
from .protocol import PROTOCOL_VERSION, protocol_pairs
from .stage import Stage
from .synth.recipe import RECIPE, recipe

log = logging.getLogger(__name__)

#: every dataset stage's params section (a new stage's joins by itself): the dataset's recipe, in its card and hash
DATA_SECTIONS = data_sections()
#: the params keys this stage reads (dvc.yaml lists the same as its ``params``)
READS = ("seed", *DATA_SECTIONS)
_START = {"any": "anywhere", "neutral": "with the driver's mouth closed"}


def params_hash(params: Params) -> str:
    """sha256 (first 16 hex) of the seed and every data-stage params section: names the dataset's recipe."""
    d = to_dict(params)
    blob = json.dumps({"seed": d["seed"], **{k: d[k] for k in DATA_SECTIONS}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_identities(clips: pd.DataFrame, test_fraction: float, seed: int,
                     forced: dict[tuple[str, str], str] | None = None) -> pd.Series:
    """``train``/``test`` per clip so that no identity is in both splits.

    Per domain, identities (after any ``forced`` ones, keyed ``(domain, identity)``) are visited in a seeded order;
    each goes to test when that brings the test share of the domain's clips closer to ``test_fraction`` (the first
    always does when ``test_fraction > 0``), keeping at least one identity on each side whenever the domain has two
    or more.
    """
    forced = forced or {}
    split: dict[tuple[str, str], str] = {}
    for di, dom in enumerate(DOMAINS):
        sub = clips[clips["domain"] == dom]
        counts = sub.groupby("identity").size().sort_index()
        ids = [i for i in counts.index if (dom, i) not in forced]
        for i in counts.index:
            if (dom, i) in forced:
                split[(dom, i)] = forced[(dom, i)]
        rng = np.random.default_rng([seed, di])
        order = [ids[k] for k in rng.permutation(len(ids))]
        n_test = sum(int(counts[i]) for i in counts.index if split.get((dom, i)) == "test")
        has_train = any(split.get((dom, i)) == "train" for i in counts.index)
        target = test_fraction * len(sub)
        for k, ident in enumerate(order):
            c = int(counts[ident])
            closer = abs(n_test + c - target) < abs(n_test - target)
            want_test = test_fraction > 0 and (n_test == 0 or closer)
            if want_test and (len(order) - k - 1 > 0 or has_train):
                split[(dom, ident)] = "test"
                n_test += c
            else:
                split[(dom, ident)] = "train"
                has_train = True
    return pd.Series([split[(d, i)] for d, i in zip(clips["domain"], clips["identity"])], index=clips.index,
                     dtype=object)


def _forced_splits(clips: pd.DataFrame, sources: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Identity splits pinned by the manifests' optional ``split`` column."""
    if "split" not in sources.columns:
        return {}
    pinned = sources.set_index("source_id")["split"].fillna("").astype(str)
    out: dict[tuple[str, str], str] = {}
    for r in clips.itertuples():
        s = pinned.get(r.source_id, "")
        if s not in ("train", "test"):
            continue
        key = (r.domain, r.identity)
        if out.setdefault(key, s) != s:
            raise DatasetError(f"identity {r.identity!r} ({r.domain}) is pinned to both train and test by the "
                               "manifests' split column", hint="give all its sources the same split")
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _first_frame_png(path: Path) -> bytes:
    from PIL import Image

    frame = next(iter_frames(path, 0, 1))
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def _features():  # noqa: ANN202 - datasets.Features
    from datasets import Features, Image, Value

    return Features({"clip_id": Value("string"), "domain": Value("string"), "identity": Value("string"),
                     "source_id": Value("string"), "n_frames": Value("int32"), "fps": Value("float32"),
                     "license": Value("string"), "first_frame": Image(), "video": Value("binary"),
                     "annotations": Value("binary")})


def _hf_dict(df: pd.DataFrame, root: Path):  # noqa: ANN202 - datasets.DatasetDict
    from datasets import Dataset, DatasetDict

    out = {}
    for split in ("train", "test"):
        sub = df[df["split"] == split]
        cols: dict[str, list] = {k: [] for k in _features()}
        for r in sub.itertuples():
            mp4 = root / r.path
            cols["clip_id"].append(r.clip_id)
            cols["domain"].append(r.domain)
            cols["identity"].append(r.identity)
            cols["source_id"].append(r.source_id)
            cols["n_frames"].append(int(r.n_frames))
            cols["fps"].append(float(r.fps))
            cols["license"].append(r.license)
            cols["first_frame"].append({"bytes": _first_frame_png(mp4), "path": None})
            cols["video"].append(mp4.read_bytes())
            cols["annotations"].append(mp4.with_suffix(".npz").read_bytes())
        out[split] = Dataset.from_dict(cols, features=_features())
    return DatasetDict(out)


def _write_parquet_shards(dd, out: Path, shard_mb: int) -> dict[str, list[str]]:  # noqa: ANN001
    files: dict[str, list[str]] = {}
    with atomic_dir(out) as tmp:
        for split, ds in dd.items():
            size = sum(len(v) + len(a) for v, a in zip(ds["video"], ds["annotations"])) if len(ds) else 0
            n = max(1, min(len(ds), -(-size // (shard_mb << 20)))) if len(ds) else 1
            files[split] = []
            for i in range(n):
                name = f"{split}-{i:05d}-of-{n:05d}.parquet"
                ds.shard(n, i, contiguous=True).to_parquet(str(tmp / name))
                files[split].append(name)
    return files


def _contact_sheet(df: pd.DataFrame, root: Path, domain: str, n_clips: int, path: Path) -> None:
    """Rows of 4 frames (start, 1/3, 2/3, end) from up to ``n_clips`` clips of ``domain`` (a note if none)."""
    from PIL import Image, ImageDraw

    sub = df[df["domain"] == domain].sort_values(["split", "clip_id"]).head(n_clips)
    tile = 128
    sheet = Image.new("RGB", (4 * tile, max(1, len(sub)) * (tile + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if sub.empty:
        draw.text((4, 4), f"no {domain} clips in this build", fill=(0, 0, 0))
    for row, r in enumerate(sub.itertuples()):
        n = int(r.n_frames)
        want = sorted({0, n // 3, 2 * n // 3, n - 1})
        frames = [f for i, f in enumerate(iter_frames(root / r.path, 0, n)) if i in want]
        y = row * (tile + 14)
        draw.text((2, y + 1), f"{r.clip_id} [{r.split}] {r.identity}", fill=(0, 0, 0))
        for col, f in enumerate(frames):
            sheet.paste(Image.fromarray(f).resize((tile, tile)), (col * tile, y + 14))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def histogram(df: pd.DataFrame, values: pd.Series, width: float, name: str) -> str:
    """CSV of clip counts per domain in bins of ``width`` (column ``name`` = bin start) — a DVC plot."""
    top = float(values.max()) if len(values) else 0.0
    edges = np.arange(0, top + width, width) if top > 0 else np.array([0.0])
    rows = {name: edges}
    for dom in DOMAINS:
        v = values[df["domain"] == dom].to_numpy(dtype=float)
        idx = np.clip((v // width).astype(int), 0, len(edges) - 1)
        rows[dom] = np.bincount(idx, minlength=len(edges))
    return pd.DataFrame(rows).to_csv(index=False)


def _stats(df: pd.DataFrame, tube_rejects: pd.DataFrame, align_report: dict, sources: pd.DataFrame,
           pairs: pd.DataFrame, phash: str) -> dict[str, Any]:
    out: dict[str, Any] = {"params_hash": phash, "clips": len(df), "minutes": round(float(
        (df["n_frames"] / df["fps"]).sum() / 60), 3) if len(df) else 0.0}
    for dom in DOMAINS:
        for split in ("train", "test"):
            sub = df[(df["domain"] == dom) & (df["split"] == split)]
            out[f"{dom}_{split}"] = {"clips": len(sub), "identities": int(sub["identity"].nunique()),
                                     "minutes": round(float((sub["n_frames"] / sub["fps"]).sum() / 60), 3)}
    rej = {str(k): int(v) for k, v in tube_rejects.groupby("reason").size().items()}
    for k, v in align_report.get("rejects", {}).items():
        rej[f"align_{k}"] = rej.get(f"align_{k}", 0) + int(v)
    out["rejects"] = dict(sorted(rej.items()))
    failed = sources[sources["status"] != "ok"] if "status" in sources.columns else sources.iloc[:0]
    out["failed_sources"] = len(failed)
    out["sources"] = len(sources)
    out["pairs"] = {t: int((pairs["task"] == t).sum()) for t in TASKS}
    out["protocol"] = {"version": PROTOCOL_VERSION, "below_threshold": int(pairs["below_threshold"].sum()),
                       "motion_range_deg_median": {t: round(float(g.median()), 2) for t, g in
                                                   pairs.groupby("task")["motion_range_deg"]},
                       "driving_frames": {t: int(g.sum()) for t, g in pairs.groupby("task")["n_frames"]}}
    return out


def _card(df: pd.DataFrame, sources: pd.DataFrame, stats: dict, shards: dict[str, list[str]], params: Params,
          check: list[str]) -> str:
    used = sources[sources["source_id"].isin(set(df["source_id"]))].sort_values("source_id")
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, names in shards.items():
        lines += [f"  - split: {split}", f"    path: parquet/{split}-*.parquet"]
    lines += ["license: other", "task_categories:", "- image-to-video", "tags:", "- face-reenactment",
              "- talking-head", "- cartoon", "---", "", "# toontalker-bench cross-domain talking-face dataset", "",
              "Square, aligned talking-face clips of real people and cartoon characters, built by the "
              "`toontalker-bench` pipeline (`dvc repro`: scrape -> tubes -> align -> build).", "",
              f"- params hash: `{stats['params_hash']}` (seed and every data-stage section of params.yaml)",
              f"- clips: {stats['clips']} ({stats['minutes']} minutes) from {stats['sources']} sources "
              f"({stats['failed_sources']} failed to download)",
              f"- clip size: {params.align.size} px, crop = {1 + params.align.increase:g} x the face box's longer "
              f"side, box mode `{params.align.box_mode}`, padding `{params.align.pad}`", "",
              "## Counts", "", "| domain | split | clips | identities | minutes |", "|---|---|---|---|---|"]
    for dom in DOMAINS:
        for split in ("train", "test"):
            s = stats[f"{dom}_{split}"]
            lines.append(f"| {dom} | {split} | {s['clips']} | {s['identities']} | {s['minutes']} |")
    lines += ["", "Train and test share no identity (seeded split). Evaluation pairs per task: "
              + ", ".join(f"{k} {v}" for k, v in stats["pairs"].items()) + " (`protocol/pairs.parquet`).", "",
              "Rejected during construction (by reason): "
              + (", ".join(f"{k} {v}" for k, v in stats["rejects"].items()) or "none") + ".", "",
              "## Sources, licences and attribution", "", "| source | domain | title | licence | attribution | url |",
              "|---|---|---|---|---|---|"]
    for r in used.itertuples():
        lines.append(f"| {r.source_id} | {r.domain} | {_cell(r.title)} | {_cell(r.license)} | "
                     f"{_cell(r.attribution)} | {_cell(r.url)} |")
    lines += ["", *check, "Face landmarks come from dlib's 68-point predictor (trained on iBUG 300-W, non-commercial "
              "licence): check it fits your use.", "",
              "## Layout", "", "- `clips.parquet`: one row per clip (`split`, crop box, source, identity, licence); "
              "`clips/<clip_id>.mp4` (H.264) and `clips/<clip_id>.npz` (`landmarks68`, `landmarks5` in crop "
              "pixels, `motion` ground truth or NaN, `gt_box`, per-frame `crop`).",
              "- `hf/`: `datasets.DatasetDict` (`load_from_disk`); `parquet/`: the same rows as self-contained "
              "shards (`video` = mp4 bytes, `annotations` = npz bytes, `first_frame` = PNG).",
              f"- `protocol/pairs.parquet`: fixed evaluation pairs (protocol version {PROTOCOL_VERSION}: driving "
              f"windows of {params.build.pair_frames} frames where the head turns at least "
              f"{params.build.min_motion_deg:g} degrees; cross-domain windows start "
              f"{_START[params.build.cross_start]}); "
              "`protocol/protocol.json` its settings; "
              "`protocol/renderer.json` the demo-corpus recipe the oracle-render bracket re-draws clips from; "
              "`stats.json`, `plots/*.csv`: DVC metrics/plots.",
              "", "## Rebuild", "", "```", "git clone <this repository> && cd toontalker-bench", "make setup",
              ".venv/bin/dvc repro          # offline demo corpus (manifests/demo.csv)",
              "# other sources: set scrape.manifests in params.yaml, then dvc repro", "```", ""]
    return "\n".join(lines)


def _cell(v: object) -> str:
    return str(v if v is not None and v == v else "").replace("|", "\\|").replace("\n", " ")


def run(params: Params, executor: Executor | None = None) -> dict[str, Any]:
    """Run the build stage (in this process: it copies files and writes tables, nothing worth a pool; ``executor``
    keeps the stage signature); returns the stats."""
    params = view(params, READS)
    b = params.build
    out = Path(b.out_dir)
    clips_dir = Path(params.align.out_dir)
    clips = read_table(clips_dir / "clips.parquet", "clip table")
    sources = read_table(Path(params.scrape.out_dir) / "sources.parquet", "sources table")
    tube_rej = read_table(Path(params.tubes.out_dir) / "rejects.parquet", "tube rejects table")
    align_report = json.loads((clips_dir / "report.json").read_text()) if (clips_dir / "report.json").is_file() \
        else {}
    if not 0 <= b.test_fraction < 1:
        raise DatasetError(f"build.test_fraction must be in [0, 1), got {b.test_fraction}")
    df = clips.copy()
    df["split"] = split_identities(df, b.test_fraction, params.seed, _forced_splits(df, sources))
    meta = sources.set_index("source_id")
    df["license"] = [str(meta.at[s, "license"]) if s in meta.index else "" for s in df["source_id"]]
    df["attribution"] = [str(meta.at[s, "attribution"]) if s in meta.index else "" for s in df["source_id"]]
    df["path"] = "clips/" + df["clip_id"] + ".mp4"
    df = df.sort_values("clip_id").reset_index(drop=True)

    stage = Stage("build", out, params, executor)  # clears what a killed build was writing
    with atomic_dir(out / "clips") as tmp:
        for cid in df["clip_id"]:
            for ext in (".mp4", ".npz"):
                _link_or_copy(clips_dir / f"{cid}{ext}", tmp / f"{cid}{ext}")
    write_table(out / "clips.parquet", df)
    spec = {"version": PROTOCOL_VERSION, "pairs_per_task": b.pairs_per_task, "pair_frames": b.pair_frames,
            "min_motion_deg": b.min_motion_deg, "cross_start": b.cross_start, "seed": params.seed}
    pairs = protocol_pairs(df, out, spec)
    write_table(out / "protocol" / "pairs.parquet", pairs)
    write_json(out / "protocol" / "protocol.json", spec)
    write_json(out / RECIPE, recipe(params))  # lets the oracle-render bracket re-draw demo clips

    import datasets

    from ..core.progress import quiet

    if quiet():
        datasets.disable_progress_bars()
    dd = _hf_dict(df, out)
    with atomic_dir(out / "hf") as tmp:
        dd.save_to_disk(str(tmp))
    shards = _write_parquet_shards(dd, out / "parquet", b.shard_mb)

    write_text(out / "plots" / "face_size.csv", histogram(df, df["median_face_px"], 16, "face_px"))
    write_text(out / "plots" / "clip_length.csv", histogram(df, df["n_frames"] / df["fps"], 1, "seconds"))
    for d in DOMAINS:
        _contact_sheet(df, out, d, b.contact_sheet_clips, out / f"contact_sheet_{d}.png")

    stats = _stats(df, tube_rej, align_report, sources, pairs, params_hash(params))
    missing = [f"{d}_{s}" for d in DOMAINS for s in ("train", "test") if stats[f"{d}_{s}"]["clips"] == 0]
    from .version import dataset_version

    check = card_lines(b.corpus_check, dataset_version(clips_dir))
    write_text(out / "README.md", _card(df, sources, stats, shards, params, check))
    write_json(out / "stats.json", stats)
    res = stage.finish(None, {})
    log.info("build: %d clips (%s), %d pairs, %.1fs%s", len(df),
             ", ".join(f"{d}/{s} {stats[f'{d}_{s}']['clips']}" for d in DOMAINS for s in ("train", "test")),
             len(pairs), res["wall_seconds"], f"; empty: {', '.join(missing)}" if missing else "")
    return stats


def push_to_hub(dataset_dir: str | os.PathLike[str], repo: str, private: bool = False) -> str:
    """Upload ``<dataset_dir>/hf`` and its card to the Hugging Face Hub; returns the repo URL."""
    from datasets import load_from_disk

    hf = Path(dataset_dir) / "hf"
    if not hf.is_dir():
        raise DatasetError(f"no built dataset at {hf}", hint="run `dvc repro` (or `toontalker-bench data build`)")
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE", "") not in (
            "", "0"):
        raise UserError(f"cannot push to {repo}: Hugging Face Hub access is switched off (HF_HUB_OFFLINE or "
                        "HF_DATASETS_OFFLINE is set)", hint="unset them and log in with `hf auth login`")
    dd = load_from_disk(str(hf))
    try:
        dd.push_to_hub(repo, private=private)
        from huggingface_hub import HfApi

        HfApi().upload_file(path_or_fileobj=str(Path(dataset_dir) / "README.md"), path_in_repo="README.md",
                            repo_id=repo, repo_type="dataset")
    except Exception as e:  # noqa: BLE001 - network, auth and repo-name errors come from requests/httpx/hub types
        raise UserError(f"cannot push to {repo}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                        hint="check the network, the repo name and `hf auth login`") from None
    return f"https://huggingface.co/datasets/{repo}"
