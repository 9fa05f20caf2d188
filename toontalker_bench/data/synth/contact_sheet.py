"""A contact sheet of the demo corpus: one row of cartoon identities, one of real shots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.io import atomic_path


def write_contact_sheet(out_dir: str | Path, dest: str | Path, per_domain: int = 8, tile: int = 200) -> Path:
    """A PNG grid of face crops: one row of cartoon identities, one of real shots (first frame of each face shot),
    and one of the real 3-D heads at set head poses and expressions."""
    import pandas as pd
    from PIL import Image

    from ...core.video import read_frames

    out = Path(out_dir)
    rows = []
    for domain in ("cartoon", "real"):
        tiles: list[np.ndarray] = []
        seen: set[str] = set()
        for gt_path in sorted(out.glob(f"{domain}_*.gt.parquet")):
            gt = pd.read_parquet(gt_path)
            firsts = gt[gt.has_face & gt.box_x0.notna()].groupby("shot").head(1)
            for _, r in firsts.iterrows():
                key = r.identity if domain == "cartoon" else f"{r.identity}-{r.shot}-{gt_path.name}"
                if key in seen or len(tiles) >= per_domain:
                    continue
                seen.add(key)
                fr = read_frames(gt_path.with_name(gt_path.name.replace(".gt.parquet", ".mp4")), int(r.frame) + 12,
                                 int(r.frame) + 13)[0]
                cx, cy = (r.box_x0 + r.box_x1) / 2, (r.box_y0 + r.box_y1) / 2
                half = 0.8 * max(r.box_x1 - r.box_x0, r.box_y1 - r.box_y0)
                box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
                tiles.append(np.asarray(Image.fromarray(fr).crop(box).resize((tile, tile), Image.BILINEAR)))
        while len(tiles) < per_domain:
            tiles.append(np.full((tile, tile, 3), 255, np.uint8))
        rows.append(np.concatenate(tiles, 1))
    from .realface3d import contact_row

    rows.append(contact_row(per_domain, tile))
    with atomic_path(dest) as tmp:
        Image.fromarray(np.concatenate(rows, 0)).save(tmp, optimize=True)
    return Path(dest)
