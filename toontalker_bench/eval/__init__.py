"""Evaluation: the fixed protocol pairs and the runner that animates them and computes metrics."""
