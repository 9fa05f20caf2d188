"""The ``faces`` stage: shots -> face tubes (detection, tracking, landmarks, filters); see docs/architecture.md."""

from .stage import run

__all__ = ["run"]
