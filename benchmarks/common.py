"""What every benchmark records next to its figures: the machine, its load, peak memory, and median summaries."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2 ** 30, 1)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, library versions, platform and the 1/5/15-min load average right now."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": _ram_gib(),
                            "python": platform.python_version(), "platform": platform.platform(),
                            "load_avg": load_avg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:  # the installed version, without importing torch into a process whose memory is being measured
        info["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        info["torch"] = None
    return info


def load_avg() -> list[float]:
    """The machine's 1/5/15-minute load average: on a shared CPU, timings are only as good as the machine was quiet."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (``ru_maxrss``, KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def summary(values: list[float], digits: int = 3) -> dict[str, Any]:
    """Median of repeated measurements, with n, min, max and every value."""
    return {"median": round(statistics.median(values), digits), "n": len(values), "min": round(min(values), digits),
            "max": round(max(values), digits), "all": [round(v, digits) for v in values]}


def pin_one_core() -> None:
    """Pin this process to one core with single-threaded OpenCV: stage timings then compare like with like."""
    import cv2

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
