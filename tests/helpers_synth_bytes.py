"""Render one short real-head video and one short cartoon video of the demo corpus into ARGV[1] and print each
output file's sha256 (run by tests/test_synth_bytes.py under several CPU dispatch settings)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from toontalker_bench.core.config import Params
from toontalker_bench.data.synth.plan import Shot, Video
from toontalker_bench.data.synth.realface3d import usable_photos
from toontalker_bench.data.synth.render import render_video

out = Path(sys.argv[1])
sp = Params().synth
photo = sorted(usable_photos()[0])[0]
videos = [Video("real_t", "real", sp.width, sp.height, sp.fps, (Shot("photo", 10, "p", photo, (0, 2, 0, 0)),)),
          Video("cartoon_t", "cartoon", sp.width, sp.height, sp.fps, (Shot("cartoon", 10, "c", "3", (0, 2, 1, 0)),))]
for v in videos:
    render_video((v, str(out), 0))
print(json.dumps({"files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*_t.*"))},
                  "torch_imported": "torch" in sys.modules}))
