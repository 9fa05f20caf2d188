"""toontalker-bench: dataset construction and benchmark harness for cross-domain face reenactment."""

__version__ = "0.1.0"
