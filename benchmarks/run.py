"""Run every benchmark script and merge their JSON into ``benchmarks/results/results.json`` (``make bench``).

Each script measures its own ratios against a reference in the same run (decode-only for the pipeline, pytorch-fid's
code path for FID); this runner only sequences them, records the machine, and prints one summary table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path("benchmarks/results")
SCRIPTS = {
    "pipeline": ["benchmarks.pipeline"],
    "metrics": ["benchmarks.metrics"],
    "models": ["benchmarks.models", "--methods", "toontalker,fomm,animeceleb", "--profiles", "tiny,paper"],
}


def main() -> int:
    merged: dict[str, object] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    failed = []
    for name, argv in SCRIPTS.items():
        print(f"== {name}: python -m {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", *argv])
        merged[f"{name}_wall_s"] = round(time.perf_counter() - t0, 1)
        path = RESULTS / f"{name}.json"
        if rc != 0 or not path.is_file():
            failed.append(name)
            continue
        merged[name] = json.loads(path.read_text())
    (RESULTS / "results.json").write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS / 'results.json'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
