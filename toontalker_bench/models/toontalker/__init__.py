"""ToonTalker (method ``toontalker``): the per-domain generator (:mod:`.networks`), the method with its losses
and training (:mod:`.model`), and the official release's loader (:mod:`.release`)."""

from .model import ToonTalker, analogy_loss

__all__ = ["ToonTalker", "analogy_loss"]
