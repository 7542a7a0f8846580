"""Run-level orchestration: train a config into a run directory; load one for prediction."""
