"""Wall time of ``make demo``, from a real run only.

- ``BENCH_DEMO=1``: runs ``make demo`` in this checkout and times it (output in ``benchmarks/results/demo.log``). It
  runs ``dvc repro`` and a full ``toontalker`` training run: about 13 minutes on 2 cores, less when the dataset is
  already up to date. For the fresh-machine figure, run it in a fresh clone.
- ``BENCH_DEMO_LOG=PATH``: reads the wall time from the log of a ``make demo`` run that was timed with bash's
  ``time`` (``real 12m45.3s``) or GNU ``/usr/bin/time -v`` (``Elapsed (wall clock) time ...: 12:45.30``).
- Neither: measures nothing and leaves an earlier ``demo.json`` (which names its date and source) as it is.

    [BENCH_DEMO=1 | BENCH_DEMO_LOG=make-demo.log] python -m benchmarks.demo [--out benchmarks/results/demo.json]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from .common import load_avg, machine

_BASH = re.compile(r"^real\s+(?:(\d+)h)?(\d+)m([\d.]+)s\s*$", re.M)
_GNU = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\):\s*(?:(\d+):)?(\d+):([\d.]+)")


def wall_from_log(text: str) -> float | None:
    """Seconds of the last ``time`` report in a log (bash ``time`` or GNU ``time -v``), or None when there is none."""
    hits = [(m.start(), m.groups()) for rx in (_BASH, _GNU) for m in rx.finditer(text)]
    if not hits:
        return None
    h, m, s = max(hits)[1]
    return int(h or 0) * 3600 + int(m) * 60 + float(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/demo.json"))
    args = ap.parse_args(argv)
    from toontalker_bench.core.io import write_json

    if os.environ.get("BENCH_DEMO") == "1":
        log_path = args.out.with_suffix(".log")
        start = {"machine": machine()}
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            rc = subprocess.call(["make", "demo"], stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        write_json(args.out, {**start, "wall_s": round(wall, 1), "returncode": rc, "source": "timed `make demo`",
                              "log": str(log_path), "load_avg_end": load_avg()})
        print(f"make demo: {wall:.0f} s (exit {rc}), log {log_path}")
        return rc
    log_file = os.environ.get("BENCH_DEMO_LOG")
    if log_file:
        wall = wall_from_log(Path(log_file).read_text(errors="replace"))
        if wall is None:
            print(f"no `time` report found in {log_file}: time `make demo` with bash `time` or /usr/bin/time -v",
                  file=sys.stderr)
            return 2
        write_json(args.out, {"wall_s": round(wall, 1), "source": f"log of a real `make demo` run: {log_file}",
                              "date_read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"make demo: {wall:.0f} s (from {log_file})")
        return 0
    print("make demo wall time not measured: set BENCH_DEMO=1 to time `make demo`, or BENCH_DEMO_LOG=<log> to read it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
