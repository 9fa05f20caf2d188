"""The generic trainer (loop, checkpoints, resume, DDP) and the training data it feeds to methods."""
