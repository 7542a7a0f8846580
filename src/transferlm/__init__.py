"""transferlm: transfer pretrained language models to your task."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from transferlm.config.schema import RunConfig
    from transferlm.runs.predictor import Predictor
    from transferlm.runs.train import TrainResult


def load(path, batch_size: int | None = None) -> Predictor:
    """Load a finished run directory; ``.predict(["great film"])`` gives labels and probabilities. ``batch_size``:
    examples per forward pass (default ``runs.predictor.PREDICT_BATCH``)."""
    from transferlm.runs.predictor import PREDICT_BATCH
    from transferlm.runs.predictor import load as _load

    return _load(path, PREDICT_BATCH if batch_size is None else batch_size)


def train(config: RunConfig | dict, resume: bool = False, overwrite: bool = False,
          on_evaluate: Callable[[int, int, float], bool] | None = None) -> TrainResult:
    """Train from a RunConfig (or the same structure as a dict, validated strictly). ``on_evaluate(step,
    total_steps, value)`` sees each validation score and may stop training by returning True (a tuner's pruner)."""
    from transferlm.config.load import build_config
    from transferlm.runs.train import train as _train

    if isinstance(config, dict):
        config = build_config(config)
    return _train(config, resume=resume, overwrite=overwrite, on_evaluate=on_evaluate)


def adapt(config: RunConfig | dict, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Domain-adaptive pretraining (``transferlm adapt``): ``config`` as for ``train``, with ``task.type`` chosen
    from the model (masked-lm or causal-lm) when absent; the run directory is a model for ``train``."""
    from transferlm.runs.adapt import adapt_config
    from transferlm.runs.train import train as _train

    data = config if isinstance(config, dict) else config.model_dump(exclude_unset=True, mode="json")
    return _train(adapt_config(data), resume=resume, overwrite=overwrite)


__all__ = ["__version__", "adapt", "load", "train"]
