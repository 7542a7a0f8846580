"""Rows -> Records via the column mapping, with every problem in a file reported at once."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlm.config.schema import DataConfig
from transferlm.data.readers import Table, read_table, summarise_lines
from transferlm.errors import DataError


@dataclass(frozen=True)
class Record:
    """One example. Classification reads ``text`` (and ``text_pair``); sequence labelling reads ``tokens``,
    with ``label`` the tuple of their BIO tags and, for raw text, ``offsets`` the tokens' character spans
    in ``text``; question answering reads the question from ``text`` and the context from ``text_pair``,
    with ``label`` a tuple of ``Answer`` (empty: unanswerable) and ``id`` the question's id."""

    text: str
    text_pair: str | None
    label: Any  # raw label value as read; the task interprets it
    line: int
    tokens: tuple[str, ...] | None = None
    offsets: tuple[tuple[int, int], ...] | None = None
    id: str | None = None


def _is_missing(value: Any) -> bool:
    return (
        value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip())
    )


def text_columns(data: DataConfig) -> list[str]:
    return [data.text_column] if isinstance(data.text_column, str) else list(data.text_column)


def row_text(row: dict[str, Any], columns: list[str]) -> Any:
    """The text of a row: one column's value, or several columns' non-empty values joined by a space (missing
    when all of them are)."""
    if len(columns) == 1:
        return row[columns[0]]
    parts = [str(row[c]).strip() for c in columns if not _is_missing(row[c])]
    return " ".join(parts) if parts else None


def check_columns(table: Table, data: DataConfig, need_label: bool) -> list[str]:
    wanted = [("text_column", name, "--text-column") for name in text_columns(data)]
    if data.text_pair_column:
        wanted.append(("text_pair_column", data.text_pair_column, "--text-pair-column"))
    if need_label:
        wanted.append(("label_column", data.label_column, "--label-column"))
    existing = ", ".join(repr(c) for c in table.columns) or "(none)"
    positions = " (data.header is false: columns are named by position from 0)" if not data.header else ""
    return [
        f"{table.path}: column {name!r} (data.{key}) not found; columns are {existing}{positions}; "
        + (_joined_hint(name, flag) if key == "text_column" and _names_columns(name, table) else f"pass {flag} NAME")
        for key, name, flag in wanted
        if name not in table.columns
    ]


def _names_columns(name: str, table: Table) -> bool:
    """Whether a missing column name is a comma-separated list of existing ones (``--text-column 1,2``)."""
    parts = [p.strip() for p in name.split(",")]
    return len(parts) > 1 and all(p in table.columns for p in parts)


def _joined_hint(name: str, flag: str) -> str:
    parts = ", ".join(p.strip() for p in name.split(","))
    return f"to join several columns give a list: {flag} '[{parts}]' (YAML: text_column: [{parts}])"


def records_from_table(table: Table, data: DataConfig, need_label: bool) -> tuple[list[Record], list[str]]:
    problems = check_columns(table, data, need_label)
    if problems:
        return [], problems
    records, empty_text, empty_label = [], [], []
    columns = text_columns(data)
    for row, line in zip(table.rows, table.lines, strict=False):
        text, pair = row_text(row, columns), row.get(data.text_pair_column) if data.text_pair_column else None
        if _is_missing(text) or (data.text_pair_column and _is_missing(pair)):
            empty_text.append(line)
            continue
        label = row.get(data.label_column)
        if need_label and _is_missing(label) and not isinstance(label, list):
            empty_label.append(line)
            continue
        records.append(Record(str(text), None if pair is None else str(pair), label, line))
    if empty_text and not data.drop_empty:
        problems.append(
            summarise_lines(
                table.path,
                "have an empty or missing text",
                empty_text,
                "fill them, remove them, or pass --drop-empty (data.drop_empty: true) to drop them",
            )
        )
    if empty_label:
        problems.append(
            summarise_lines(
                table.path,
                f"have an empty label in column {data.label_column!r}",
                empty_label,
                "label them or remove them",
            )
        )
    if not records and not problems:
        problems.append(f"{table.path}: no data rows; the file needs at least one labelled example")
    return records, problems


def read_data_table(path: Path, data: DataConfig) -> Table:
    """``read_table`` under the reader settings of the ``data`` section."""
    return read_table(path, data.format, data.header, data.quoting, data.extra_columns)


def read_records(path: Path, data: DataConfig, need_label: bool = True) -> tuple[list[Record], list[str]]:
    """Read one file; returns records and problems instead of raising, so callers can report all files at once."""
    try:
        table = read_data_table(path, data)
    except DataError as e:
        return [], e.problems
    return records_from_table(table, data, need_label)


def stratified_split(
    records: Sequence[Record], key: Callable[[Record], Hashable], fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Seeded split keeping each class's share; classes with one example stay in train."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[key(record)].append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for name in sorted(groups, key=repr):
        members = groups[name]
        rng.shuffle(members)
        take = round(len(members) * fraction) if len(members) > 1 else 0
        held.update(members[: max(take, 1 if len(members) > 1 else 0)])
    train = [r for i, r in enumerate(records) if i not in held]
    validation = [r for i, r in enumerate(records) if i in held]
    return train, validation


def grouped_split(
    records: Sequence[Record], group: Callable[[Record], Hashable], fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Seeded split that keeps each group (e.g. all questions about one context) on one side: whole groups,
    in a seeded order, are held out until ``fraction`` of the records is reached."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        members[group(record)].append(i)
    order = sorted(members, key=repr)
    random.Random(seed).shuffle(order)
    held: set[int] = set()
    for name in order:
        if len(held) >= fraction * len(records) or len(held) + len(members[name]) == len(records):
            break
        held.update(members[name])
    train = [r for i, r in enumerate(records) if i not in held]
    validation = [r for i, r in enumerate(records) if i in held]
    return train, validation
