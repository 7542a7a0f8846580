"""One split for every member: the parent reads and checks the data once and writes it out, so each run
sees exactly the same examples. Curve subsets are nested: per seed, each class's examples are shuffled
once and a subset of k per class is the first k of that order, so a larger subset contains the smaller."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlm.config.load import set_dotted
from transferlm.data.records import Record
from transferlm.runs.prepare import Splits
from transferlm.tasks.base import Task
from transferlm.training.checkpoint import atomic_write_text


@dataclass(frozen=True)
class SplitFiles:
    train: Path
    validation: Path
    test: Path | None
    evaluated: str  # the split the experiment reports: test when there is one
    n_eval: int
    columns: dict[str, Any]  # the settings (dotted keys) under which the task reads these files back


def write_records(path: Path, records: Sequence[Record], task: Task) -> Path:
    rows = [task.record_row(r) for r in records]
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_splits(root: Path, splits: Splits, task: Task) -> SplitFiles:
    root.mkdir(parents=True, exist_ok=True)
    test = write_records(root / "test.jsonl", splits.test, task) if splits.test is not None else None
    return SplitFiles(
        write_records(root / "train.jsonl", splits.train, task),
        write_records(root / "validation.jsonl", splits.validation, task),
        test,
        "test" if test else "validation",
        len(splits.test if splits.test is not None else splits.validation),
        task.read_back_keys(),
    )


def read_back(config: dict, train: Path, files: SplitFiles) -> None:
    """Point a member's run config (a dict) at the written files, with the settings that read them back."""
    config["data"] = {
        "train": str(train),
        "validation": str(files.validation),
        "test": str(files.test) if files.test else None,
        "format": "jsonl",
        "drop_empty": config["data"].get("drop_empty", False),
    }
    for key, value in files.columns.items():
        set_dotted(config, key, value)


def nested_subset(
    records: Sequence[Record], key: Callable[[Record], Hashable], per_class: int, seed: int
) -> list[Record]:
    """The first ``per_class`` examples of each class in a seeded order (all of a smaller class)."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[key(record)].append(i)
    rng = random.Random(seed)
    chosen: list[int] = []
    for name in sorted(groups, key=repr):
        order = list(groups[name])
        rng.shuffle(order)
        chosen += order[:per_class]
    return [records[i] for i in sorted(chosen)]
