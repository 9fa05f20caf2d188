"""The corpus check: does each picture carry the expression its ground truth records? Read by an instrument nobody
here trained, MediaPipe's Face Landmarker (:mod:`..faces.mediapipe`).

On every ``every``-th frame of every clip with ground truth, the blendshapes that read a channel (blink: eyeBlink,
mouth_open: jawOpen, smile: mouthSmile; left and right averaged) are compared with the ground-truth morphs (both
sides averaged). Values are relative: each clip's first analysed frame is subtracted from both, so a photo's own
expression (a smiling portrait, an open mouth) does not count. Per domain and channel the Pearson r of the two is
reported, with a target; a channel below its target is listed in ``missed``. ``docs/corpus-check.json`` and its
picture (first frame, strongest blink, widest mouth and broadest smile of one clip per identity, each with the
instrument's reading) are committed for the dataset version the board is scored on.

The check reads the aligned clips (``align.out_dir``, the clips the dataset is built from) and records their DVC
version (``clips_version``) with the dataset's: the build stage quotes a check of the same clips in the dataset card
(:func:`card_lines`), naming any channel below its target; a check of other clips is not quoted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import UserError
from ..core.progress import progress
from ..faces.mediapipe import CHANNELS
from ..faces.pose import MORPHS

log = logging.getLogger(__name__)
INSTRUMENT = "mediapipe-face-landmarker"
GT: dict[str, tuple[str, ...]] = {"blink": ("blink_left", "blink_right"), "mouth_open": ("mouth_open",),
                                  "smile": ("smile",)}
# the targets for an instrument trained on real faces: real heads are photos, cartoons are drawn
TARGETS: dict[str, dict[str, float]] = {"real": {"blink": 0.8, "mouth_open": 0.8, "smile": 0.6},
                                        "cartoon": {"blink": 0.6, "mouth_open": 0.6}}


@dataclass(frozen=True)
class CorpusCheck:
    readings: pd.DataFrame  # one row per analysed frame: clip, domain, identity, t, gt_<ch>, mp_<ch>
    summary: dict


def read_corpus(clips_dir: str | Path, every: int = 2, max_clips: int | None = None) -> pd.DataFrame:
    """Instrument readings and ground truth on every ``every``-th frame of the clips that have ground truth."""
    from ..core.video import read_frames
    from ..faces.mediapipe import FaceLandmarker

    root = Path(clips_dir)
    table = root / "clips.parquet"
    if not table.is_file():
        raise UserError(f"no clip table at {table}", hint="build the clips first: dvc repro (or make demo)")
    clips = pd.read_parquet(table)
    idx = [MORPHS.index(n) for n in sorted({m for ms in GT.values() for m in ms})]
    rows = []
    with FaceLandmarker() as lmk:
        todo = list(clips.itertuples())[:max_clips]
        for c in progress(todo, desc="corpus check", unit="clip"):
            side = root / Path(c.path).with_suffix(".npz")
            motion = np.load(side)["motion"] if side.is_file() else None
            if motion is None or not np.isfinite(motion[:, idx]).all():
                continue  # a real video without ground truth (e.g. the carphone clip)
            frames = read_frames(root / c.path)
            for t in range(0, min(len(frames), len(motion)), every):
                r = lmk.read(frames[t])
                row = {"clip": c.clip_id, "domain": c.domain, "identity": c.identity, "t": t, "found": r.found}
                for ch, morphs in GT.items():
                    row[f"gt_{ch}"] = float(np.mean([motion[t, MORPHS.index(m)] for m in morphs]))
                    row[f"mp_{ch}"] = r.channel(ch)
                rows.append(row)
    if not rows:
        raise UserError(f"no clip in {table} has ground-truth motion", hint="the corpus check needs the demo corpus")
    return pd.DataFrame(rows)


def summarise(readings: pd.DataFrame, versions: dict[str, str], instrument_id: str, every: int) -> dict:
    """Per domain and channel: r on relative values, the target and whether it is met; detection rate."""
    df = readings[readings["found"]].copy()
    for ch in CHANNELS:
        for p in ("gt", "mp"):
            df[f"{p}_{ch}_rel"] = df[f"{p}_{ch}"] - df.groupby("clip")[f"{p}_{ch}"].transform("first")
    r: dict[str, dict[str, float | None]] = {}
    by_identity: dict[str, dict[str, float | None]] = {}
    missed = []
    for dom, g in df.groupby("domain"):
        r[dom] = {ch: _pearson(g[f"gt_{ch}_rel"], g[f"mp_{ch}_rel"]) for ch in CHANNELS}
        for ch, target in TARGETS.get(dom, {}).items():
            if r[dom][ch] is None or r[dom][ch] < target:
                missed.append(f"{dom}/{ch}")
        for ident, h in g.groupby("identity"):
            by_identity[ident] = {ch: _pearson(h[f"gt_{ch}_rel"], h[f"mp_{ch}_rel"]) for ch in CHANNELS}
    det = readings.groupby("domain")["found"].mean()
    return {
        "instrument": instrument_id, **versions, "every": every,
        "relative_to": "each clip's first analysed frame",
        "channels": {ch: {"ground_truth": list(GT[ch]), "blendshapes": list(CHANNELS[ch])} for ch in CHANNELS},
        "frames": {dom: int(n) for dom, n in readings.groupby("domain").size().items()},
        "detection_rate": {dom: round(float(v), 4) for dom, v in det.items()},
        "r": r, "targets": TARGETS, "missed": missed, "r_by_identity": by_identity,
    }


def _pearson(a: pd.Series, b: pd.Series) -> float | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 4)


def instrument_id() -> str:
    from ..assets import catalogue

    return f"{INSTRUMENT}:{catalogue.spec(INSTRUMENT).sha256[:12]}"


def check_corpus(clips_dir: str | Path, dataset_dir: str | Path, out_json: str | Path,
                 out_png: str | Path | None = None, every: int = 2, max_clips: int | None = None) -> CorpusCheck:
    """Run the check on the aligned clips at ``clips_dir`` (the dataset at ``dataset_dir`` is built from them: its
    version is recorded too); write the summary (JSON) and, if asked, the picture."""
    from .version import dataset_version

    readings = read_corpus(clips_dir, every, max_clips)
    versions = {"clips_version": dataset_version(clips_dir),
                "dataset_version": dataset_version(dataset_dir) if Path(dataset_dir, "clips.parquet").is_file()
                else None}
    summary = summarise(readings, versions, instrument_id(), every)
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(summary, indent=2) + "\n")
    if out_png is not None:
        picture(clips_dir, readings, out_png)
    return CorpusCheck(readings, summary)


def picture(clips_dir: str | Path, readings: pd.DataFrame, out_png: str | Path, tile: int = 160,
            per_domain: int = 4) -> Path:
    """One row per identity (its clip with the strongest blink; the first ``per_domain`` identities of each domain):
    first frame, strongest blink, widest mouth, broadest smile, each labelled with the ground truth and the
    instrument's reading of that channel."""
    import cv2

    from ..core.video import read_frames

    root = Path(clips_dir)
    clips = pd.read_parquet(root / "clips.parquet").set_index("clip_id")
    found = readings[readings["found"]]
    shown = [i for _, g in found.groupby("domain", sort=True) for i in sorted(g["identity"].unique())[:per_domain]]
    rows = []
    for ident, g in found[found["identity"].isin(shown)].groupby("identity", sort=True):
        clip = g.loc[g["gt_blink"].idxmax(), "clip"]
        h = g[g["clip"] == clip]
        frames = read_frames(root / clips.loc[clip, "path"])
        picks = [("first", "blink", int(h["t"].iloc[0]))]
        picks += [(ch, ch, int(h.loc[h[f"gt_{ch}"].idxmax(), "t"])) for ch in CHANNELS]
        tiles = []
        for label, ch, t in picks:
            img = cv2.resize(frames[t], (tile, tile), interpolation=cv2.INTER_AREA)
            row = h[h["t"] == t].iloc[0]
            text = [f"{ident} {label}", f"{ch}: gt {row[f'gt_{ch}']:.2f} mp {row[f'mp_{ch}']:.2f}"]
            img = _label(img, text)
            tiles.append(img)
        rows.append(np.concatenate(tiles, 1))
    sheet = np.concatenate(rows, 0)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out_png


def _label(img: np.ndarray, lines: list[str]) -> np.ndarray:
    import cv2

    out = img.copy()
    out[: 12 * len(lines) + 4] = (out[: 12 * len(lines) + 4] * 0.45).astype(np.uint8)
    for i, s in enumerate(lines):
        cv2.putText(out, s, (3, 12 + 12 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def card_lines(check_json: str | Path, clips_version: str) -> list[str]:
    """The dataset card's section on the corpus check: the committed check of these very clips, with any channel
    below its target named; otherwise a line saying these clips are unchecked."""
    path = Path(check_json)
    res = json.loads(path.read_text()) if path.is_file() else None
    lines = ["## Expression check", ""]
    if res is None or res.get("clips_version") != clips_version:
        return lines + [f"These clips have not been checked by an independent instrument ({path} checked "
                        f"{res.get('clips_version') if res else 'nothing'}): run `toontalker-bench data check-corpus`.",
                        ""]
    lines += [f"Does each picture carry the expression its ground truth records? Read by `{res['instrument']}` "
              f"(MediaPipe Face Landmarker blendshapes) on one frame in {res['every']}; Pearson r with the ground "
              "truth, both relative to each clip's first frame.", "",
              "| domain | " + " | ".join(CHANNELS) + " |", "|---|" + "---|" * len(CHANNELS)]
    for dom, chans in sorted(res["r"].items()):
        cells = []
        for ch in CHANNELS:
            target = res["targets"].get(dom, {}).get(ch)
            v = chans.get(ch)
            cells.append(("-" if v is None else f"{v:.2f}") + (f" (target {target:g})" if target is not None else ""))
        lines.append(f"| {dom} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Below target: " + (", ".join(res["missed"]) + ": models and metrics see these channels less "
                                     "clearly than the ground truth says." if res["missed"] else "none."))
    return lines + [""]
