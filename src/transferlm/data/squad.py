"""Files for extractive question answering -> Records, every problem reported at once with question ids.

Formats: SQuAD v1.1 / v2.0 JSON (``{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}``; v2.0 marks
unanswerable questions with ``is_impossible`` and an empty answer list) and JSONL, one question per line
with ``question``, ``context`` and ``answers`` (``{"text": [...], "answer_start": [...]}`` as in Hugging
Face datasets, or a list of ``{"text", "answer_start"}``; empty for unanswerable) and an optional ``id``.

An answer whose text is not the context at ``answer_start`` is left out and reported (count and ids) as
a warning: it is never trained on, and a question left with no usable answer is left out too (it must
not turn into an "unanswerable" one). Missing questions or contexts and offsets outside the context are
errors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from transferlm.config.schema import DataConfig
from transferlm.config.selected import Section
from transferlm.data.readers import MAX_LISTED, lone_surrogate, read_jsonl, read_text
from transferlm.data.records import Record
from transferlm.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True)
class RawQuestion:
    id: str
    line: int
    question: Any
    context: Any
    answers: Any  # as read; None where the file gives none


class QaColumns(Section):
    """Where questions, contexts and answers are in a JSONL file (the qa task's settings include these)."""

    question_column: str = Field("question", description="JSONL: key holding the question.")
    context_column: str = Field("context", description="JSONL: key holding the context passage.")
    answers_column: str = Field(
        "answers",
        description="JSONL: key holding the answers, {text: [...], answer_start: [...]} or [{text, answer_start}, "
        "...] with character offsets into the context; empty for unanswerable.",
    )
    id_column: str = Field("id", description="JSONL: key holding the question id (default: the line number).")


def summarise_ids(where: str | Path, what: str, ids: list[str], fix: str) -> str:
    shown = ", ".join(ids[:MAX_LISTED])
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return f"{where}: {len(ids)} question(s) {what} (ids {shown}{more}); {fix}"


def read_qa_records(path: Path, data: DataConfig, need_label: bool = True,
                    columns: QaColumns | None = None) -> tuple[list[Record], list[str]]:
    """Records (question in ``text``, context in ``text_pair``, answers in ``label``); problems returned."""
    columns = columns or QaColumns()
    path = Path(path)
    if not path.is_file():
        return [], [f"{path}: file not found; check the path (relative paths start at {Path.cwd()})"]
    fmt = data.format
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = "squad" if suffix == ".json" else "jsonl" if suffix in (".jsonl", ".ndjson") else ""
    try:
        if fmt == "squad":
            raw = list(_squad_questions(path))
        elif fmt == "jsonl":
            raw = list(_jsonl_questions(path, columns))
        else:
            return [], [f"{path}: question answering reads SQuAD JSON (.json) or JSONL (.jsonl); rename the file "
                         "or set data.format to squad or jsonl"]
    except DataError as e:
        return [], e.problems
    records, problems = _records(path, raw, need_label)
    if not records and not problems:
        problems.append(f"{path}: no questions; the file needs at least one")
    return records, problems


def _squad_questions(path: Path) -> list[RawQuestion]:
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {e.lineno}: not valid JSON ({e.msg}); SQuAD files are one JSON document, "
                        "JSON lines need the .jsonl extension") from e
    articles = document.get("data") if isinstance(document, dict) else None
    if not isinstance(articles, list):
        raise DataError(f'{path}: not SQuAD JSON: expected {{"data": [{{"paragraphs": [...]}}]}} at the top level')
    questions, malformed = [], []
    for a, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            malformed.append(f"data[{a}]")
            continue
        for p, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                malformed.append(f"data[{a}].paragraphs[{p}]")
                continue
            for q, qa in enumerate(qas):
                if not isinstance(qa, dict) or lone_surrogate([qa, paragraph.get("context")]):
                    malformed.append(f"data[{a}].paragraphs[{p}].qas[{q}]")
                    continue
                answers = [] if qa.get("is_impossible") else qa.get("answers")
                qid = qa.get("id")
                questions.append(RawQuestion(f"{a}-{p}-{q}" if qid is None else str(qid), len(questions) + 1,
                                             qa.get("question"), paragraph.get("context"), answers))
    if malformed:
        shown = ", ".join(malformed[:MAX_LISTED]) + (f" and {len(malformed) - MAX_LISTED} more"
                                                      if len(malformed) > MAX_LISTED else "")
        raise DataError(f"{path}: {len(malformed)} entries are not SQuAD's shape ({shown}); each article needs a "
                        'list "paragraphs" of {"context", "qas": [{"id", "question", "answers"}]}, and text that is '
                        "valid Unicode (no lone surrogate escapes such as \\ud800)")
    return questions


def _jsonl_questions(path: Path, columns: QaColumns) -> Iterator[RawQuestion]:
    table = read_jsonl(path)
    for row, line in zip(table.rows, table.lines, strict=True):
        answers = row.get(columns.answers_column)
        if isinstance(answers, dict):  # {"text": [...], "answer_start": [...]}
            texts, starts = answers.get("text", []), answers.get("answer_start", [])
            if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
                answers = "malformed"
            else:
                answers = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
        qid = row.get(columns.id_column)
        yield RawQuestion(str(line if qid is None else qid), line, row.get(columns.question_column),
                          row.get(columns.context_column), answers)


def _records(path: Path, raw: list[RawQuestion], need_label: bool) -> tuple[list[Record], list[str]]:
    no_question, no_context, no_answers, malformed, outside, mismatched, lost = [], [], [], [], [], [], []
    records = []
    for item in raw:
        if not isinstance(item.question, str) or not item.question.strip():
            no_question.append(item.id)
            continue
        if not isinstance(item.context, str) or not item.context.strip():
            no_context.append(item.id)
            continue
        answers = None
        if need_label:
            if item.answers is None:
                no_answers.append(item.id)
                continue
            parsed = _answers(item.answers)
            if parsed is None:
                malformed.append(item.id)
                continue
            if any(not 0 <= a.start < len(item.context) for a in parsed):
                outside.append(item.id)
                continue
            kept = tuple(a for a in parsed if item.context[a.start:a.end] == a.text)
            if len(kept) < len(parsed):
                mismatched.append(item.id)
                if not kept:
                    lost.append(item.id)
                    continue
            answers = kept
        records.append(Record(item.question, item.context, answers, item.line, id=item.id))
    problems = [summarise_ids(path, what, ids, fix) for ids, what, fix in (
        (no_question, "have no question", "give each a non-empty question"),
        (no_context, "have no context", "give each a non-empty context passage"),
        (no_answers, "have no answers", 'give "answers" (an empty list for an unanswerable question)'),
        (malformed, "have malformed answers",
         'write answers as [{"text": ..., "answer_start": ...}] or {"text": [...], "answer_start": [...]}, '
         "with non-empty texts and integer character offsets"),
        (outside, "have an answer_start outside the context", "fix the offsets (characters from 0)"),
    ) if ids]
    if mismatched:
        log.warning(summarise_ids(path, "have answers whose text differs from the context at answer_start; those "
                                  "answers are left out", mismatched, "fix answer_start to train on them"))
    if lost:
        log.warning(summarise_ids(path, "have no answer left after that and are left out", lost,
                                  "fix their answer offsets"))
    return records, problems


def _answers(value: Any) -> tuple[Answer, ...] | None:
    if not isinstance(value, list):
        return None
    answers = []
    for answer in value:
        if not isinstance(answer, dict):
            return None
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            return None
        answers.append(Answer(text, start))
    return tuple(answers)
