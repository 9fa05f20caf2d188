"""First Order Motion Model (method ``fomm``), one network per module as in the official ``modules/``:
:mod:`.keypoint_detector`, :mod:`.dense_motion`, :mod:`.generator`, :mod:`.discriminator`, shared blocks in
:mod:`.util`; the method, its losses and equivariance in :mod:`.model`; the release loader in :mod:`.release`."""

from .model import FOMM

__all__ = ["FOMM"]
