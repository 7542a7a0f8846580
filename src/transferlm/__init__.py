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
    from transferlm.models.load import quiet_loading
    from transferlm.runs.predictor import PREDICT_BATCH
    from transferlm.runs.predictor import load as _load

    with quiet_loading():
        return _load(path, PREDICT_BATCH if batch_size is None else batch_size)


def train(config: RunConfig | dict, resume: bool = False, overwrite: bool = False,
          on_evaluate: Callable[[int, int, float], bool] | None = None) -> TrainResult:
    """Train from a RunConfig (or the same structure as a dict, validated strictly). ``on_evaluate(step,
    total_steps, value)`` sees each validation score and may stop training by returning True (a tuner's pruner)."""
    from transferlm.config.load import build_config
    from transferlm.models.load import quiet_loading
    from transferlm.runs.train import train as _train

    if isinstance(config, dict):
        config = build_config(config)
    with quiet_loading():
        return _train(config, resume=resume, overwrite=overwrite, on_evaluate=on_evaluate)


def adapt(config: RunConfig | dict, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Domain-adaptive pretraining (``transferlm adapt``): ``config`` as for ``train``, with ``task.type`` chosen
    from the model (masked-lm or causal-lm) when absent; the run directory is a model for ``train``."""
    from transferlm.models.load import quiet_loading
    from transferlm.runs.adapt import adapt_config
    from transferlm.runs.train import train as _train

    data = config if isinstance(config, dict) else config.model_dump(exclude_unset=True, mode="json")
    with quiet_loading():
        return _train(adapt_config(data), resume=resume, overwrite=overwrite)


_API = ("compare", "curve", "tune", "rank", "auto", "inspect", "export", "serve", "push", "ExperimentResult",
        "InspectResult")


def __getattr__(name: str):
    """The other commands as functions (``transferlm.compare``, ``transferlm.export``, ...), from ``transferlm.api``,
    imported when first used so that ``import transferlm`` stays light."""
    if name in _API:
        from transferlm import api

        return getattr(api, name)
    raise AttributeError(f"module 'transferlm' has no attribute {name!r}")


__all__ = ["__version__", "adapt", "load", "train", *_API]
