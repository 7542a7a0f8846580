"""Files for sequence labelling (NER) -> Records of tokens and BIO tags, every problem reported at once.

Formats: CoNLL columns (one token per line, a blank line between sentences, ``-DOCSTART-`` lines
skipped, the tag column chosen by index), JSONL with a token list and a tag list, and JSONL with raw
text plus character-span entities. Raw text is split into words (runs of letters and digits, or single
punctuation characters) and also at every entity boundary, so each entity covers whole words and its
character offsets survive exactly; the model's tokenizer then splits the words into subwords.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from transferlm.config.schema import DataConfig
from transferlm.config.selected import Section
from transferlm.data import tagging
from transferlm.data.readers import read_jsonl, read_text, summarise_lines, text_lines
from transferlm.data.records import Record
from transferlm.errors import DataError

CONLL_EXTENSIONS = (".conll", ".conllu", ".iob", ".bio", ".txt")


class SequenceColumns(Section):
    """Where tokens and tags are in a sequence-labelling file (the ner task's settings include these)."""

    tokens_column: str = Field("tokens", description="JSONL: key holding the list of tokens.")
    tags_column: str = Field("tags", description="JSONL: key holding the list of tags, one per token.")
    entities_column: str = Field(
        "entities",
        description="JSONL with raw text: key holding the entities, [{start, end, label}] in characters (end "
        "exclusive).",
    )
    conll_tag_column: int = Field(
        -1, description="CoNLL: index of the tag column (0 is the token; -1, the last column, by default)."
    )
    tag_scheme: Literal["auto", "iob1", "bio", "bioes"] = Field(
        "auto",
        description="Tag scheme of the files (converted to BIO). auto: bioes if E-/S- occur, iob1 if entities start "
        "with I-, else bio, where an I- after O is reported as an error.",
    )


def read_sequence_records(path: Path, data: DataConfig, need_label: bool = True,
                          columns: SequenceColumns | None = None) -> tuple[list[Record], list[str]]:
    """Records with ``tokens`` and BIO tags (``label``); returns problems instead of raising."""
    columns = columns or SequenceColumns()
    path = Path(path)
    if not path.is_file():
        return [], [f"{path}: file not found; check the path (relative paths start at {Path.cwd()})"]
    fmt = data.format
    if fmt == "auto":
        fmt = "conll" if path.suffix.lower() in CONLL_EXTENSIONS else "jsonl" if path.suffix.lower() in (
            ".jsonl", ".ndjson") else ""
    try:
        if fmt == "conll":
            records, problems = _read_conll(path, columns.conll_tag_column, need_label)
        elif fmt == "jsonl":
            records, problems = _read_jsonl(path, data, need_label, columns)
        else:
            return [], [f"{path}: sequence labelling reads CoNLL column files ({', '.join(CONLL_EXTENSIONS)}) or "
                         "JSONL; rename the file or set data.format to conll or jsonl"]
    except DataError as e:
        return [], e.problems
    if not records and not problems:
        problems.append(f"{path}: the file is empty; it needs at least one sentence")
    if need_label and records and not problems:
        records, problems = _to_bio(path, records, columns.tag_scheme)
    return records, problems


def _read_conll(path: Path, tag_column: int, need_label: bool) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    short: list[int] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0

    def flush():
        if tokens:
            records.append(Record(" ".join(tokens), None, tuple(tags) if need_label else None, first, tuple(tokens)))
        tokens.clear()
        tags.clear()

    for number, line in enumerate(text_lines(read_text(path)), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            flush()
            continue
        if not tokens:
            first = number
        tokens.append(fields[0])
        if need_label:
            try:
                tags.append(fields[tag_column])
            except IndexError:
                short.append(number)
                tags.append("O")
            if len(fields) < 2:
                short.append(number)
    flush()
    problems = []
    if short:
        problems.append(summarise_lines(
            path, f"have no tag column (task.conll_tag_column is {tag_column})", sorted(set(short)),
            "write `token ... tag` separated by spaces, or set task.conll_tag_column to the tag's index"))
    return records, problems


def _read_jsonl(path: Path, data: DataConfig, need_label: bool,
                columns: SequenceColumns) -> tuple[list[Record], list[str]]:
    table = read_jsonl(path)
    if columns.tokens_column in table.columns:
        return _token_rows(path, table.rows, table.lines, columns, need_label)
    if data.text_column in table.columns:
        return _text_rows(path, table.rows, table.lines, data.text_column, columns, need_label)
    existing = ", ".join(repr(c) for c in table.columns) or "(none)"
    return [], [f"{path}: neither {columns.tokens_column!r} (task.tokens_column) nor {data.text_column!r} "
                f"(data.text_column) is a key; keys are {existing}; give tokens + {columns.tags_column!r}, or text + "
                f"{columns.entities_column!r}"]


def _token_rows(path, rows, lines, columns: SequenceColumns, need_label: bool) -> tuple[list[Record], list[str]]:
    records, bad, missing, mismatch = [], [], [], []
    for row, line in zip(rows, lines, strict=True):
        tokens, tags = row.get(columns.tokens_column), row.get(columns.tags_column)
        if not _string_list(tokens) or not tokens:
            bad.append(line)
            continue
        if need_label:
            if not _string_list(tags):
                missing.append(line)
                continue
            if len(tags) != len(tokens):
                mismatch.append(line)
                continue
        tokens = tuple(str(t) for t in tokens)
        records.append(Record(" ".join(tokens), None, tuple(tags) if need_label else None, line, tokens))
    problems = []
    if bad:
        problems.append(summarise_lines(path, f"have no non-empty list of strings in {columns.tokens_column!r}", bad,
                                        'write each line as {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}'))
    if missing:
        problems.append(summarise_lines(path, f"have no list of tags in {columns.tags_column!r}", missing,
                                        "add one tag per token, or set task.tags_column"))
    if mismatch:
        problems.append(summarise_lines(path, "have a different number of tokens and tags", mismatch,
                                        "give exactly one tag per token"))
    return records, problems


def _text_rows(path, rows, lines, text_column: str, columns: SequenceColumns,
               need_label: bool) -> tuple[list[Record], list[str]]:
    records, problems = [], []
    for row, line in zip(rows, lines, strict=True):
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{path} line {line}: {text_column!r} is missing or empty; give the raw text")
            continue
        entities, found = _entities(row.get(columns.entities_column), text, need_label)
        problems += [f"{path} line {line}: {p}" for p in found]
        if found:
            continue
        words = tagging.words_with_offsets(text, [c for e in entities for c in (e.start, e.end)])
        tags = tuple(tagging.tags_for_spans(words, entities)) if need_label else None
        records.append(Record(text, None, tags, line, tuple(text[s:e] for s, e in words), tuple(words)))
    return records, problems


def _entities(value: Any, text: str, need_label: bool) -> tuple[list[tagging.Span], list[str]]:
    if not need_label:
        return [], []
    if not isinstance(value, list):
        return [], ['"entities" is missing or not a list; give [{"start": 0, "end": 2, "label": "ORG"}, ...] '
                    "([] for none)"]
    spans, problems = [], []
    for n, entity in enumerate(value):
        ok = isinstance(entity, dict) and all(isinstance(entity.get(k), int) for k in ("start", "end")) and \
            isinstance(entity.get("label"), str) and entity["label"]
        if not ok:
            problems.append(f"entity {n}: needs integer start and end and a label string, got {entity!r}")
        elif not 0 <= entity["start"] < entity["end"] <= len(text):
            problems.append(f"entity {n} ({entity['start']}..{entity['end']}, {entity['label']}) falls outside the "
                            f"text (length {len(text)}); offsets are 0-based characters, end exclusive")
        elif not text[entity["start"]:entity["end"]].strip():
            problems.append(f"entity {n} ({entity['start']}..{entity['end']}) covers only whitespace")
        else:
            spans.append(tagging.Span(entity["start"], entity["end"], entity["label"]))
    spans.sort(key=lambda s: s.start)
    for a, b in zip(spans, spans[1:], strict=False):
        if b.start < a.end:
            problems.append(f"entities overlap: {a.start}..{a.end} ({a.label}) and {b.start}..{b.end} ({b.label}); "
                            "flat NER needs disjoint spans: keep one of them")
    return spans, problems


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value)


def _to_bio(path: Path, records: Sequence[Record], setting: str) -> tuple[list[Record], list[str]]:
    bad = [r.line for r in records if tagging.malformed(r.label)]
    if bad:
        examples = sorted({r.label[i] for r in records for i in tagging.malformed(r.label)})[:5]
        return [], [summarise_lines(path, f"have malformed tags (e.g. {', '.join(map(repr, examples))})", bad,
                                    "use O or PREFIX-TYPE with prefix B, I, E or S (e.g. B-PER, I-LOC)")]
    scheme = tagging.detect_scheme([r.label for r in records]) if setting == "auto" else setting
    converted, orphans = [], []
    for record in records:
        tags, stray = tagging.to_bio(record.label, scheme)
        if stray and scheme != "iob1":
            orphans.append(record.line)
        converted.append(_with_tags(record, tuple(tags)))
    problems = []
    if orphans:
        detected = " (detected)" if setting == "auto" else ""
        problems.append(summarise_lines(
            path, f"have an I- (or E-) tag that continues no entity under the {scheme.upper()} scheme{detected}",
            orphans, "start each entity with B- (or S-), or set task.tag_scheme: iob1 if the file is IOB1"))
    return converted, problems


def _with_tags(record: Record, tags: tuple[str, ...]) -> Record:
    return Record(record.text, None, tags, record.line, record.tokens, record.offsets)
