"""Read every split, let the task check labels, and report all problems of all files at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transferlm.config.schema import RunConfig
from transferlm.data.readers import read_table
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
    try:
        return _load_splits(config, task)
    except DataError as e:
        raise DataError([_named(problem, config.data) for problem in e.problems]) from None


def _named(problem: str, data) -> str:
    """A problem in a split given in memory names that split, not the cache file it was written to."""
    for split, source in data.sources.items():
        path = getattr(data, split)
        if path is not None:
            problem = problem.replace(str(path), f"data.{split} ({source['kind']}, {source['rows']} rows)")
    return problem


def _load_splits(config: RunConfig, task: Task) -> Splits:
    data = config.data
    problems: list[str] = []
    train, found = task.read_records(data.train)
    problems += found
    if data.exclude is not None:
        train, found = _excluded(train, data.exclude, data.train)
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


def _excluded(train: list[Record], exclude: Path, source: Path) -> tuple[list[Record], list[str]]:
    """``train`` without the rows whose file lines ``exclude`` lists (its ``line`` column)."""
    try:
        table = read_table(exclude, "csv")
    except DataError as e:
        return train, [f"data.exclude: {p}" for p in e.problems]
    if "line" not in table.columns:
        return train, [f"data.exclude: {exclude} has no 'line' column (its columns are {', '.join(table.columns)}); "
                       "give the label_errors.csv of `transferlm inspect --label-errors`"]
    try:
        lines = {int(row["line"]) for row in table.rows}
    except ValueError:
        return train, [f"data.exclude: {exclude}: the 'line' column holds a value that is not a whole number"]
    kept = [r for r in train if r.line not in lines]
    unknown = len(lines) - (len(train) - len(kept))
    log.info("data.exclude: left out %d training examples listed in %s%s", len(train) - len(kept), exclude,
             f" ({unknown} listed lines are not rows of {source})" if unknown else "")
    return kept, []
