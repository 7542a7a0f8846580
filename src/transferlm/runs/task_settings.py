"""Task settings decided by the checkpoint: ``task.pooling`` and ``task.pair_encoding`` auto, and what a bi-encoder
needs of the others. ``train`` applies them before building the task (and logs each); ``auto`` shows them as
choices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlm.config.schema import RunConfig
from transferlm.models.resolve import trained_with_mean_pooling


@dataclass(frozen=True)
class Resolved:
    key: str  # the dotted setting, e.g. "task.pooling"
    value: Any
    because: str


def resolve_task_settings(config: RunConfig, model_path: Path | str) -> tuple[RunConfig, list[Resolved]]:
    """``config`` with the task's checkpoint-dependent settings decided, and each decision with its reason."""
    task, done = config.task, []
    fields = type(task).model_fields
    # whether the checkpoint is a sentence-embedding model (only tasks with these settings ask)
    mean = ("pooling" in fields or "pair_encoding" in fields) and trained_with_mean_pooling(model_path)
    if "pair_encoding" in fields and task.pair_encoding == "auto" and config.data.text_pair_column:
        bi = mean
        done.append(Resolved("task.pair_encoding", "bi" if bi else "cross", (
            "a sentence-embedding checkpoint (its sentence-transformers pooling is the mean): a bi-encoder starts "
            "from its own cosine similarity" if bi else "no sentence-embedding config in the checkpoint: both texts "
            "in one input under a new head")))
    bi = "pair_encoding" in fields and (done[-1].value if done else task.pair_encoding) == "bi"
    if bi and task.long_inputs == "windows":
        done.append(Resolved("task.long_inputs", "truncate", "a bi-encoder embeds each text in one pass, and "
                             "windows would make several inputs of a long one (head-tail is the other choice)"))
    if "pooling" in fields and task.pooling == "auto":
        if bi:
            done.append(Resolved("task.pooling", "mean", "a bi-encoder embeds each text by its mean token state"))
        else:
            pooling = "mean" if mean else "cls"
            done.append(Resolved("task.pooling", pooling, "the checkpoint's sentence-transformers pooling is the "
                                 "mean" if pooling == "mean" else "no mean-pooling config in the checkpoint: the "
                                 "model's own head"))
    if not done:
        return config, done
    update = {r.key.split(".", 1)[1]: r.value for r in done}
    return config.model_copy(update={"task": task.model_copy(update=update)}), done
