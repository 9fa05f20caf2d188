"""The built-in offline demo corpus (``toontalker-bench data synth``): see :mod:`.stage`."""

from .contact_sheet import write_contact_sheet
from .stage import run

__all__ = ["run", "write_contact_sheet"]
