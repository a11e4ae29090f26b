"""The phase loop, checkpoints, evaluation metrics and compute accounting."""
