"""The ``tubes`` stage: sources -> shot cuts and face tubes (detection, tracking, landmarks, filters) in one decode;
see docs/architecture.md. Not to be confused with ``toontalker_bench.faces``, the face-analysis models it uses."""

from .stage import run

__all__ = ["run"]
