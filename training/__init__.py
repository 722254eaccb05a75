"""Training side of tap-restore: synthetic data, two-stage training, evaluation, export."""
