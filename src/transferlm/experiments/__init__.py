"""Experiments over many runs: ``compare`` (strategies against baselines) and ``curve`` (data efficiency)."""
