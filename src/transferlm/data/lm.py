"""Language-model data: plain-text documents, chat conversations, prompt/completion pairs.

Three kinds of file, told apart by their content, each becoming ``Record``s:

- plain text (``.txt``, ``.raw``, ``.text``, ``.md``, or ``data.format: text``): documents are the
  paragraphs between blank lines (``task.documents: lines`` makes every line one, ``file`` the whole
  file). ``text`` holds the document.
- JSONL/CSV/Parquet rows with ``task.messages_column`` (default ``messages``): a list of
  ``{"role", "content"}`` turns, kept in ``label`` as a tuple of ``Turn``.
- rows with ``task.prompt_column`` and ``task.completion_column``: ``text`` is the prompt and
  ``text_pair`` the completion.
- rows with only ``data.text_column``: one document per row.

Every problem in a file is reported at once with its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from transferlm.config.schema import DataConfig
from transferlm.config.selected import Section
from transferlm.data.readers import read_text, summarise_lines, text_lines
from transferlm.data.records import Record, read_data_table, row_text, text_columns
from transferlm.errors import DataError

ROLES = ("system", "user", "assistant", "tool")
TEXT_SUFFIXES = (".txt", ".raw", ".text", ".md")


class Documents(Section):
    """What one document of a plain-text file is (the causal-lm and masked-lm settings include this)."""

    documents: Literal["paragraphs", "lines", "file"] = Field(
        "paragraphs",
        description="Plain text: what one document is (documents are joined with the end-of-sequence (masked-lm: "
        "separator) token and packed into blocks of model.max_length): paragraphs between blank lines, lines, or "
        "the file.",
    )


class LmColumns(Documents):
    """Where chats and prompt/completion pairs are in a table (the causal-lm settings include these)."""

    messages_column: str = Field(
        "messages", description="Key holding a chat as [{role, content}, ...] (loss on assistant turns)."
    )
    prompt_column: str = Field("prompt", description="Key holding the prompt of a prompt/completion pair.")
    completion_column: str = Field("completion", description="Key holding the completion (the only part with a loss).")


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


def is_chat(record: Record) -> bool:
    return isinstance(record.label, tuple) and all(isinstance(t, Turn) for t in record.label)


def is_prompt_completion(record: Record) -> bool:
    return not is_chat(record) and record.text_pair is not None


def _is_text_file(path: Path, data: DataConfig) -> bool:
    return data.format == "text" or (data.format == "auto" and path.suffix.lower() in TEXT_SUFFIXES)


def _read_text_file(path: Path, documents: str) -> tuple[list[Record], list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (relative paths start at {Path.cwd()})")
    records = text_documents(read_text(path), documents)
    return records, [] if records else [f"{path}: no text (the file is empty or only whitespace)"]


def read_documents(path: Path, data: DataConfig, settings: Documents | None = None) -> tuple[list[Record], list[str]]:
    """Unlabelled documents only: a plain-text file, or the ``data.text_column`` of a table (other columns,
    labels included, are ignored)."""
    settings = settings or Documents()
    path = Path(path)
    if _is_text_file(path, data):
        return _read_text_file(path, settings.documents)
    table = read_data_table(path, data)
    if not table.rows:
        return [], [f"{path}: no rows; the file is empty"]
    wanted = text_columns(data)
    if any(c not in table.columns for c in wanted):
        columns = ", ".join(repr(c) for c in table.columns)
        return [], [f"{path}: no {data.text_column!r} column to read text from (the columns are {columns}); set "
                    "data.text_column"]
    return _document_rows(table.path, table.rows, table.lines, wanted)


def read_lm_records(path: Path, data: DataConfig, columns: LmColumns | None = None) -> tuple[list[Record], list[str]]:
    columns = columns or LmColumns()
    path = Path(path)
    if _is_text_file(path, data):
        return _read_text_file(path, columns.documents)
    table = read_data_table(path, data)
    if not table.rows:
        return [], [f"{path}: no rows; the file is empty"]
    if columns.messages_column in table.columns:
        return _chat_records(table.path, table.rows, table.lines, columns.messages_column)
    if columns.prompt_column in table.columns or columns.completion_column in table.columns:
        return _pair_records(table.path, table.rows, table.lines, columns)
    if all(c in table.columns for c in text_columns(data)):
        return _document_rows(table.path, table.rows, table.lines, text_columns(data))
    found = ", ".join(repr(c) for c in table.columns)
    return [], [f"{path}: causal-lm data needs a {columns.messages_column!r} column (chat), "
                f"{columns.prompt_column!r} and {columns.completion_column!r} (pairs) or {data.text_column!r} "
                f"(documents); the columns are {found}. Set task.messages_column, "
                "task.prompt_column/completion_column or data.text_column"]


def text_documents(text: str, documents: str) -> list[Record]:
    """Documents of a plain-text file with the line each starts on."""
    if documents == "file":
        return [Record(text, None, None, 1)] if text.strip() else []
    records: list[Record] = []
    line = 1
    if documents == "lines":
        for number, content in enumerate(text_lines(text), start=1):
            if content.strip():
                records.append(Record(content, None, None, number))
        return records
    # paragraphs: runs of non-blank lines (whitespace-only lines count as blank), inner newlines kept
    current: list[str] = []
    for number, content in enumerate(text_lines(text), start=1):
        if content.strip():
            if not current:
                line = number
            current.append(content)
        elif current:
            records.append(Record("\n".join(current), None, None, line))
            current = []
    if current:
        records.append(Record("\n".join(current), None, None, line))
    return records


def _document_rows(
    path: Path, rows: list[dict], lines: list[int], columns: list[str]
) -> tuple[list[Record], list[str]]:
    records, empty = [], []
    for row, line in zip(rows, lines, strict=True):
        value = row_text(row, columns)
        if not isinstance(value, str) or not value.strip():
            empty.append(line)
        else:
            records.append(Record(value, None, None, line))
    named = ", ".join(map(repr, columns))
    problems = [summarise_lines(path, f"have no text in {named}", empty, "fill or remove them")] if empty else []
    return records, problems


def _pair_records(path: Path, rows: list[dict], lines: list[int], data: LmColumns) -> tuple[list[Record], list[str]]:
    records, bad = [], []
    for row, line in zip(rows, lines, strict=True):
        prompt, completion = row.get(data.prompt_column), row.get(data.completion_column)
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
            bad.append(line)
        else:
            records.append(Record(prompt, completion, None, line))
    problems = []
    if bad:
        problems.append(summarise_lines(path, f"lack a string {data.prompt_column!r} or a non-empty "
                                              f"{data.completion_column!r}", bad, "give both on every line"))
    return records, problems


def _chat_records(path: Path, rows: list[dict], lines: list[int], column: str) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    missing, malformed, no_assistant = [], [], []
    unknown: dict[str, list[int]] = {}
    for row, line in zip(rows, lines, strict=True):
        messages = row.get(column)
        if not isinstance(messages, list) or not messages:
            missing.append(line)
            continue
        turns = parse_turns(messages)
        if turns is None:
            malformed.append(line)
            continue
        odd = [t.role for t in turns if t.role not in ROLES]
        for role in odd:
            unknown.setdefault(role, []).append(line)
        if odd:
            continue
        if not any(t.role == "assistant" for t in turns):
            no_assistant.append(line)
            continue
        records.append(Record("", None, tuple(turns), line))
    problems = []
    if missing:
        example = f'{{"{column}": [{{"role": "user", "content": ...}}, ...]}}'
        problems.append(summarise_lines(path, f"have no {column!r} list", missing, f"write each line as {example}"))
    if malformed:
        problems.append(summarise_lines(path, "have a turn that is not {\"role\": str, \"content\": str}", malformed,
                                        "give every turn a role and a string content"))
    for role, role_lines in unknown.items():
        problems.append(summarise_lines(path, f"have the unknown role {role!r}", role_lines,
                                        f"roles are {', '.join(ROLES)}"))
    if no_assistant:
        problems.append(summarise_lines(path, "have no assistant turn, so nothing to learn from", no_assistant,
                                        "add the assistant's reply or remove them"))
    return records, problems


def parse_turns(messages: Any) -> list[Turn] | None:
    """Turns of a ``messages`` list, or None if a turn is not ``{"role": str, "content": str}``."""
    if not isinstance(messages, list):
        return None
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        turns.append(Turn(role, content))
    return turns
