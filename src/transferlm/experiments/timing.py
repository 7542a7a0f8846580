"""How long a planned run takes, from one timed training step on this machine (``transferlm auto``'s budget)."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import NamedTuple

from transferlm.config.schema import RunConfig

TIMED_STEPS = 2  # the first step pays for allocation; the faster of the two is kept


class Timing(NamedTuple):
    step: float  # seconds per optimizer step
    steps: int  # optimizer steps
    evaluations: int
    batch_size: int  # what train.batch_size resolves to, at which the step was timed
    epochs: float  # what train.epochs resolves to
    epochs_why: str  # the recipe's reason for those epochs (runs/recipes.py), or "given"


def step_seconds(config: RunConfig, splits, path: Path) -> Timing:
    """How long one optimizer step of ``config`` trained on ``splits`` takes, and how many steps and evaluations the
    run makes: the step is timed (forward, backward, update) on a batch drawn from the training data, then scaled to
    a length-grouped batch of average length (the attention's quadratic share is ignored); the batch, steps and
    evaluations are what ``train.batch_size``/``train.epochs`` auto (``runs/recipes.py``) or the given settings make
    of the data."""
    import torch

    from transferlm.models.load import load_tokenizer, quiet_loading
    from transferlm.models.resolve import model_kind
    from transferlm.runs.lengths import resolve_max_length
    from transferlm.runs.recipes import auto_recipe
    from transferlm.strategies import build_strategy
    from transferlm.tasks import build_task

    task = build_task(config.task, config.data)  # the planned task settings (pooling) build the timed model
    task.fit_labels(splits.train, {})
    tokenizer = load_tokenizer(path)
    config = resolve_max_length(config, task, tokenizer, path, splits.train)
    strategy = build_strategy(config.strategy)
    recipe = auto_recipe(task.name, strategy, model_kind(path), len(splits.train))
    size = recipe.batch_size if config.train.batch_size == "auto" else config.train.batch_size
    sample = random.Random(config.train.seed).sample(splits.train, min(len(splits.train), 2 * size))
    features = task.encode(tokenizer, sample, config.model.max_length)
    with quiet_loading():
        model = strategy.apply(task.build_model(path, tokenizer), task).train()
    batch = task.training_collate(features.items[:size], tokenizer.pad_token_id)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-6)
    times = []
    for _ in range(TIMED_STEPS):
        began = time.perf_counter()
        task.loss(task.forward(model, batch), batch).total.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - began)
    # Training groups similar lengths into a batch (little padding): a step costs about the timed one scaled from
    # the timed batch's padded tokens to a batch of average length.
    timed = features.lengths[:size]
    scale = (sum(features.lengths) / len(features.lengths)) / max(timed) if config.train.group_by_length else 1.0
    items = len(splits.train) * len(features.items) / max(len(sample), 1)
    items *= getattr(config.strategy, "pairs_per_example", 1)  # contrastive trains on pairs of examples
    per_epoch = math.ceil(items / (size * config.train.grad_accum))
    auto_epochs = config.train.epochs == "auto"
    epochs = strategy.auto_epochs(per_epoch, recipe.budget) if auto_epochs else config.train.epochs
    steps = config.train.max_steps or max(math.ceil(epochs * per_epoch), config.train.min_steps or 0)
    evaluations = config.train.evaluations or (math.ceil(epochs) if config.train.eval_every == "epoch" else
                                               max(steps // config.train.eval_every, 1))
    pairs = 2.0 if config.strategy.name == "contrastive" else 1.0  # a pair step encodes two texts per example
    return Timing(min(times) * scale * pairs, steps, evaluations, size, epochs,
                  recipe.why["epochs"] if auto_epochs else "given")
