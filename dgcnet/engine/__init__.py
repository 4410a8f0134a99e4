"""Training, evaluation and fast inference engines."""
