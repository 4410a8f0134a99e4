"""Engines: training, evaluation and prediction, and what they need at run time (checkpoints, processes, locks, signals)."""
