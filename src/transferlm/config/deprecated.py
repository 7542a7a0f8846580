"""Keys from the one-tree config of transferlm 0.1 that moved, read for one more release with a message.

Task-specific data keys (``data.tag_scheme``, ``data.question_column``, ...) moved into their task's section, and
``strategy.lora.*`` and ``strategy.contrastive.*`` into their strategy's. A moved key that a user changed goes to its
new place with a deprecation message; one left at its old default changes nothing and is dropped quietly, which
also lets configs saved by 0.1 (they hold every key of every task) resume and load.
"""

from __future__ import annotations

import logging
from typing import Any

from transferlm.config.selected import STRATEGY_SETTINGS, TASK_SETTINGS, StrategySettings, TaskSettings
from transferlm.errors import RegistryError

log = logging.getLogger(__name__)

REMOVED_IN = "0.3"

# 0.1's keys that applied to some tasks or strategies only, with their 0.1 defaults.
DATA_TO_TASK = {
    "label_delimiter": None,
    "tokens_column": "tokens", "tags_column": "tags", "entities_column": "entities", "conll_tag_column": -1,
    "tag_scheme": "auto",
    "question_column": "question", "context_column": "context", "answers_column": "answers", "id_column": "id",
    "messages_column": "messages", "prompt_column": "prompt", "completion_column": "completion",
    "documents": "paragraphs",
}
TASK_KEYS = {"multi_label": False, "pooling": "auto", "threshold": 0.5, "class_weights": "none", "stride": None,
             "label_all_subwords": False, "max_answer_length": 30, "n_best": 20, "mlm_probability": 0.15,
             "whole_word_mask": False}
STRATEGY_KEYS = {"layers": None, "layer_lr_decay": 1.0, "gradual_unfreeze": False, "cache_features": True}
STRATEGY_GROUPS = {
    "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None, "merge": False},
    "contrastive": {"pairs_per_example": 40, "head_c": 1.0},
}


def moved_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a run config as written) with 0.1's spellings moved to where the keys live now."""
    data = dict(data)
    task = dict(data["task"]) if isinstance(data.get("task"), dict) else None
    strategy = dict(data["strategy"]) if isinstance(data.get("strategy"), dict) else None
    if isinstance(data.get("data"), dict):
        section = dict(data["data"])
        for key, default in DATA_TO_TASK.items():
            if key in section:
                value = section.pop(key)
                if value != default:
                    task = {} if task is None else task
                    _move(task, key, value, f"data.{key}", f"task.{key}")
        data["data"] = section
    if strategy is not None:
        for group, defaults in STRATEGY_GROUPS.items():
            if isinstance(strategy.get(group), dict) and group not in _keys(STRATEGY_SETTINGS, strategy, "name"):
                for key, value in strategy.pop(group).items():
                    if value != defaults.get(key, object()):
                        _move(strategy, key, value, f"strategy.{group}.{key}", f"strategy.{key}")
        _drop_unchanged(strategy, STRATEGY_KEYS, STRATEGY_SETTINGS, "name")
        data["strategy"] = strategy
    if task is not None:
        _drop_unchanged(task, TASK_KEYS, TASK_SETTINGS, "type")
        data["task"] = task
    return data


def _move(section: dict[str, Any], key: str, value: Any, old: str, new: str) -> None:
    log.warning("%s is now %s; the old spelling is read until transferlm %s", old, new, REMOVED_IN)
    section.setdefault(key, value)


def _keys(registry, section: dict[str, Any], name_key: str) -> set[str]:
    """The keys of the class that ``section`` selects; none where its name is unknown (validation reports that)."""
    base = TaskSettings if registry is TASK_SETTINGS else StrategySettings
    name = section.get(name_key, base.model_fields[name_key].default)
    try:
        return set(registry.get(str(name)).model_fields)
    except RegistryError:
        return set()


def _drop_unchanged(section: dict[str, Any], old: dict[str, Any], registry, name_key: str) -> None:
    """0.1 wrote every task's (strategy's) keys into each run's config; those at their defaults say nothing."""
    applies = _keys(registry, section, name_key)
    for key, default in old.items():
        if key in section and key not in applies and section[key] == default:
            del section[key]
