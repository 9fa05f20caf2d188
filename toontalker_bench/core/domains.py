"""The two domains and the four evaluation tasks: names every layer shares."""

from __future__ import annotations

from typing import Literal

Domain = Literal["real", "cartoon"]
DOMAINS: tuple[Domain, ...] = ("real", "cartoon")

TASKS: dict[str, tuple[Domain, Domain]] = {  # task -> (source domain, driving domain)
    "self_real": ("real", "real"),
    "self_cartoon": ("cartoon", "cartoon"),
    "real2cartoon": ("cartoon", "real"),
    "cartoon2real": ("real", "cartoon"),
}
SELF_TASKS: tuple[str, ...] = tuple(t for t, (src, drv) in TASKS.items() if src == drv)


def is_cross(task: str) -> bool:
    """True for the cross-domain tasks (source and driving from different domains)."""
    src, drv = TASKS[task]
    return src != drv
