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

from transferlm.config.schema import RunConfig
from transferlm.data.records import Record
from transferlm.runs.prepare import Splits
from transferlm.training.checkpoint import atomic_write_text


@dataclass(frozen=True)
class SplitFiles:
    train: Path
    validation: Path
    test: Path | None
    evaluated: str  # the split the experiment reports: test when there is one
    n_eval: int


def _row(record: Record) -> dict:
    if record.tokens is not None:  # sequence labelling: tokens and their (already BIO) tags
        return {"tokens": list(record.tokens), "tags": list(record.label)}
    return {"text": record.text, "text_pair": record.text_pair, "label": record.label}


def write_records(path: Path, records: Sequence[Record]) -> Path:
    rows = [_row(r) for r in records]
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_splits(root: Path, splits: Splits) -> SplitFiles:
    root.mkdir(parents=True, exist_ok=True)
    test = write_records(root / "test.jsonl", splits.test) if splits.test is not None else None
    return SplitFiles(
        write_records(root / "train.jsonl", splits.train),
        write_records(root / "validation.jsonl", splits.validation),
        test,
        "test" if test else "validation",
        len(splits.test if splits.test is not None else splits.validation),
    )


def data_settings(config: RunConfig, train: Path, files: SplitFiles) -> dict:
    """The data section of a member's run: the written files, read back with the original label handling."""
    data = config.data
    return {
        "train": str(train),
        "validation": str(files.validation),
        "test": str(files.test) if files.test else None,
        "format": "jsonl",
        "text_column": "text",
        "text_pair_column": "text_pair" if data.text_pair_column else None,
        "label_column": "label",
        "label_delimiter": data.label_delimiter,
        "drop_empty": data.drop_empty,
        "tokens_column": "tokens",
        "tags_column": "tags",
        "tag_scheme": "bio",  # written after conversion
    }


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
