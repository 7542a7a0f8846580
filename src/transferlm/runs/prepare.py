"""Read every split, let the task check labels, and report all problems of all files at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transferlm.config.schema import RunConfig
from transferlm.data.records import Record, grouped_split, stratified_split
from transferlm.errors import DataError
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    train: list[Record]
    validation: list[Record]
    test: list[Record] | None
    validation_source: str  # the file, or a description of the carve-out


def load_splits(config: RunConfig, task: Task) -> Splits:
    data = config.data
    problems: list[str] = []
    train, found = task.read_records(data.train)
    problems += found
    others: dict[str, list[Record]] = {}
    for path in (data.validation, data.test):
        if path is not None:
            records, found = task.read_records(path)
            problems += found
            others[str(path)] = records
    if problems:  # label checks on half-read files would only add noise
        raise DataError(problems)

    validation_source = str(data.validation) if data.validation else ""
    if data.validation is None:
        grouped = any(task.split_group(r) is not None for r in train[:1])
        if grouped:
            train, carved = grouped_split(train, task.split_group, data.validation_split, config.train.seed)
        else:
            train, carved = stratified_split(train, task.split_key, data.validation_split, config.train.seed)
        if not carved:
            raise DataError(f"{data.train}: the validation carve-out is empty ({len(train)} examples"
                            + (", all in one group" if grouped else "") + "); pass data.validation (--validation FILE)")
        others = {f"validation carve-out of {data.train}": carved, **others}
        kind = "grouped" if grouped else "stratified"
        validation_source = f"{data.validation_split:.0%} {kind} carve-out of {data.train} (seed {config.train.seed})"
        log.info("validation: %s, %d examples", validation_source, len(carved))
    problems = task.fit_labels(train, others, train_name=str(data.train))
    if problems:
        raise DataError(problems)
    named = list(others.values())
    test = others.get(str(data.test)) if data.test else None
    return Splits(train, named[0], test, validation_source)
