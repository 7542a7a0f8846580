"""How long the model's inputs are: ``model.max_length: auto`` chosen from the training data, and what encoding cut
from each split, logged and kept for metrics.json so that no text is cut silently."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transferlm.config.schema import RunConfig
from transferlm.tasks.base import Features, Task
from transferlm.tasks.long_inputs import LongInputSettings, choose_max_length, cut_summary, describe_cuts

log = logging.getLogger(__name__)

# model.max_length auto never goes above this: longer inputs are read in windows of it. Attention's cost grows with
# the square of the window; on IMDb (bench/long_docs.py, 2,000 training reviews, 1 epoch) windows of 256 reached
# 87.3 % test accuracy against 85.4 % for windows of 512, with a lower peak memory (4.4 GB against 6.0 GB).
AUTO_MAX_LENGTH = 256
AUTO_DEFAULT = 128  # model.max_length auto for tasks that read long inputs in windows of their own (ner, qa, lm)


def model_limit(model_path: Path, tokenizer: Any) -> int | None:
    """The longest input the model takes (its position embeddings; the tokenizer's declared limit), if known."""
    from transformers import AutoConfig

    limits = [getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    known = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]  # 1e30: "no limit declared"
    return min(known) if known else None


def resolve_max_length(config: RunConfig, task: Task, tokenizer: Any, model_path: Path, train) -> RunConfig:
    """``model.max_length: auto`` resolved (logged, and saved in the run's config): for a task that reads one
    input per output, the smallest multiple of 32 that holds 95 % of the training inputs, at most the model's limit
    and ``AUTO_MAX_LENGTH``; for the other tasks ``AUTO_DEFAULT``."""
    if config.model.max_length != "auto":
        return config
    limit = min(AUTO_MAX_LENGTH, model_limit(model_path, tokenizer) or AUTO_MAX_LENGTH)
    lengths = task.input_lengths(tokenizer, train)
    if lengths is None:
        chosen = min(AUTO_DEFAULT, limit)
        log.info("model.max_length auto: %d (task %s reads longer inputs in windows of its own)", chosen, task.name)
    else:
        chosen = choose_max_length(lengths, limit)
        wanted = choose_max_length(lengths, 1_000_000)
        longer = sum(n > chosen for n in lengths)
        fate = (f"read in windows (task.long_inputs {task.task_config.long_inputs})"
                if getattr(task.task_config, "long_inputs", "truncate") == "windows" else
                f"cut by task.long_inputs {task.task_config.long_inputs}")
        why = (f"95 % of {len(lengths)} training inputs fit in {wanted} tokens" if wanted <= limit else
               f"95 % of {len(lengths)} training inputs would need {wanted} tokens; auto stops at {limit}")
        log.info("model.max_length auto: %d (%s); %d longer (%.1f %%) are %s", chosen, why, longer,
                 100 * longer / max(len(lengths), 1), fate)
    return config.model_copy(update={"model": config.model.model_copy(update={"max_length": chosen})})


def report_cuts(task: Task, encoded: dict[str, Features | None], counts: dict[str, int], max_length: int
                ) -> dict[str, Any] | None:
    """Per split, how many inputs were cut and by how much (logged; returned for metrics.json); None for tasks
    that never cut an input (they read long ones in windows of their own)."""
    if not isinstance(task.task_config, LongInputSettings):
        return None
    report = {}
    for name, features in encoded.items():
        if features is None:
            continue
        report[name] = summary = {**cut_summary(dict(features.cuts), counts[name]), "model_inputs": len(features)}
        line = describe_cuts(summary, name, max_length, task.task_config.long_inputs)
        (log.warning if summary["truncated"] else log.info)(line)
        if len(features) > counts[name]:
            log.info("%s: %d inputs read as %d windows of up to %d tokens", name, counts[name], len(features),
                     max_length)
    return report
