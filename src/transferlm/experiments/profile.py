"""What a data file is and what is in it, for ``transferlm auto``: the task inferred from the file, the columns
guessed where the user named none, and a profile of the training data (sizes, classes, imbalance, token lengths,
duplicates and conflicting labels).

Task inference, each with the evidence it rests on:
  CoNLL columns (a .conll/.iob/.bio file, or a .txt whose lines are `token ... tag` with BIO tags)  -> ner
  SQuAD JSON (data -> paragraphs -> qas)                                                            -> qa
  a table with a text column and a categorical label                                                -> classification
  a table with a text column and a numeric label (real values, or more than 20 distinct integers)   -> regression
  text only (a .txt of prose, or a table without a label column)                                    -> adapt
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferlm.data.readers import EXTENSIONS, read_table
from transferlm.errors import ConfigError, DataError

TAG = re.compile(r"^(O|[BIES]-\S+)$")
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "body", "question", "utterance")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "score", "sentiment", "y")
PAIRS = (("sentence1", "sentence2"), ("question1", "question2"), ("text_a", "text_b"), ("text1", "text2"),
         ("premise", "hypothesis"))
MAX_CLASSES = 20  # a numeric label with more distinct integer values than this is a quantity, not a class
SAMPLE_LINES = 200


@dataclass(frozen=True)
class Inferred:
    task: str  # a task type, or "adapt" (text only)
    evidence: str
    columns: dict[str, Any] = field(default_factory=dict)  # data.* settings guessed (the user named none)
    task_settings: dict[str, Any] = field(default_factory=dict)  # task.* settings the data implies


def infer_task(path: Path, data: dict[str, Any]) -> Inferred:
    """The task ``path`` holds, from its format and content; ``data`` is the data section the user gave (columns
    named there are used, not guessed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (relative paths start at {Path.cwd()})")
    suffix = path.suffix.lower()
    if suffix in (".conll", ".conllu", ".iob", ".bio"):
        return Inferred("ner", f"{path.name}: a {suffix} file (CoNLL token/tag columns)")
    if suffix == ".json":
        return _json_task(path)
    if suffix in (".txt", ".raw", ".text", ".md"):
        return _text_task(path)
    if suffix in EXTENSIONS or data.get("format") in ("csv", "tsv", "jsonl", "parquet"):
        return _table_task(path, data)
    raise ConfigError(f"auto: cannot infer the task from {path.name} (extension {suffix!r}): give a .csv, .tsv, "
                      ".jsonl or .parquet table, a CoNLL .txt/.conll file, SQuAD .json or plain text, or pass --task")


def _json_task(path: Path) -> Inferred:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e}); SQuAD files are one JSON document") from None
    articles = document.get("data") if isinstance(document, dict) else None
    if isinstance(articles, list) and articles and isinstance(articles[0], dict) and "paragraphs" in articles[0]:
        questions = sum(len(p.get("qas", [])) for a in articles for p in a.get("paragraphs", []))
        return Inferred("qa", f"{path.name}: SQuAD JSON (data -> paragraphs -> qas; {len(articles)} articles, "
                              f"{questions} questions)")
    raise ConfigError(f"auto: {path.name} is JSON but not SQuAD's layout (data -> paragraphs -> qas); write tables as "
                      ".jsonl (one object per line), or pass --task")


def _text_task(path: Path) -> Inferred:
    lines = [line for line in _head(path) if line.strip() and not line.startswith("-DOCSTART-")]
    tagged = [line for line in lines if len(line.split()) >= 2 and TAG.match(line.split()[-1])]
    if lines and len(tagged) >= 0.9 * len(lines):
        return Inferred("ner", f"{path.name}: {len(tagged)} of the first {len(lines)} lines are `token ... tag` "
                               "columns with BIO tags (CoNLL)")
    return Inferred("adapt", f"{path.name}: plain text without labels (domain adaptation: continued pretraining)")


def _head(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8") as f:
            return [line.rstrip("\n") for _, line in zip(range(SAMPLE_LINES), f, strict=False)]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); re-encode it as UTF-8") from None


def _table_task(path: Path, data: dict[str, Any]) -> Inferred:
    table = read_table(path, data.get("format", "auto"), data.get("header", True), data.get("quoting", True),
                       data.get("extra_columns", "error"))
    if not table.rows:
        raise DataError(f"{path}: no rows")
    rows = table.rows[:2000]
    columns: dict[str, Any] = {}
    listed = [c for c in table.columns if all(isinstance(r.get(c), list) for r in rows[:50])]
    if any(c.lower() in ("tokens", "words") for c in listed):
        return Inferred("ner", f"{path.name}: rows hold token lists ({', '.join(listed)})")
    if {"question", "context", "answers"} <= set(table.columns):
        return Inferred("qa", f"{path.name}: question, context and answers columns")
    lowered = {c.lower(): c for c in table.columns}
    pair = next(((lowered[a], lowered[b]) for a, b in PAIRS if a in lowered and b in lowered), None)
    if pair and "text_column" not in data:
        columns["text_column"], columns["text_pair_column"] = pair
    text = data.get("text_column") or columns.get("text_column") or _guess(table.columns, TEXT_NAMES, rows,
                                                                           longest=True)
    if text is None:
        raise ConfigError(f"auto: {path.name}: no text column found among {table.columns}; pass --text-column")
    if "text_column" not in data:
        columns.setdefault("text_column", text)
    texts = {str(t) for t in (text if isinstance(text, list) else [text])}
    texts.add(str(data.get("text_pair_column") or columns.get("text_pair_column")))
    label = data.get("label_column") or _guess([c for c in table.columns if c not in texts], LABEL_NAMES, rows)
    if label is None or str(label) not in table.columns:
        return Inferred("adapt", f"{path.name}: a text column ({text!r}) and no label column: domain adaptation",
                        columns)
    if "label_column" not in data:
        columns["label_column"] = label
    if any(isinstance(r.get(str(label)), list) for r in rows):
        return Inferred("classification", f"column {label!r} holds lists of labels: multi-label classification",
                        columns, {"multi_label": True})
    values = [r[str(label)] for r in rows if r.get(str(label)) not in (None, "")]
    numbers = [_number(v) for v in values]
    distinct = len(set(map(str, values)))
    if values and all(n is not None for n in numbers):
        integral = all(float(n).is_integer() for n in numbers)
        if not integral or distinct > MAX_CLASSES:
            return Inferred("regression", f"column {label!r} holds numbers ({distinct} distinct values"
                                          f"{'' if integral else ', not all integers'}): regression", columns)
    shown = ", ".join(sorted(set(map(str, values)))[:6])
    return Inferred("classification", f"column {label!r} holds {distinct} distinct values ({shown}"
                                      f"{', ...' if distinct > 6 else ''}): classification", columns)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _guess(columns: Sequence[str], names: Sequence[str], rows: list[dict], longest: bool = False) -> str | None:
    """A column by its usual name, else (``longest``) the column whose values are the longest text."""
    by_name = {c.lower(): c for c in columns}
    for name in names:
        if name in by_name:
            return by_name[name]
    if longest:
        lengths = {c: statistics.mean(len(str(r.get(c) or "")) for r in rows) for c in columns
                   if sum(_number(r.get(c)) is None for r in rows) > len(rows) / 2}
        return max(lengths, key=lengths.get) if lengths else None
    # no usual name: the column with the fewest distinct values (a category or a rating), if it repeats at all
    distinct = {c: len({json.dumps(r.get(c), default=str) for r in rows}) for c in columns}
    repeated = [c for c in columns if distinct[c] < len(rows)]
    return min(repeated, key=lambda c: distinct[c]) if repeated else None


def profile(task, records: Sequence, tokenizer) -> dict[str, Any]:
    """Sizes, labels, token lengths, duplicates and conflicting labels of the training records."""
    found: dict[str, Any] = {"examples": len(records)}
    found.update(task.label_profile(records) or {})
    lengths = task.input_lengths(tokenizer, records)
    if lengths:
        ordered = sorted(lengths)
        found["tokens"] = {"median": ordered[len(ordered) // 2], "p95": ordered[int(0.95 * (len(ordered) - 1))],
                           "max": ordered[-1]}
    if task.name in ("classification", "regression"):
        found.update(_duplicates(records))
    counts = found.get("counts")
    if task.name == "classification" and counts:
        found["fewest_per_class"] = min(counts.values())
        found["imbalance"] = round(max(counts.values()) / max(min(counts.values()), 1), 2)
    return found


def _duplicates(records: Sequence) -> dict[str, int]:
    labels: dict[tuple, set] = defaultdict(set)
    seen: Counter = Counter()
    for r in records:
        key = (r.text.strip().lower(), (r.text_pair or "").strip().lower())
        seen[key] += 1
        labels[key].add(json.dumps(r.label, default=str))
    return {"duplicate_texts": sum(n - 1 for n in seen.values() if n > 1),
            "conflicting_labels": sum(1 for values in labels.values() if len(values) > 1)}
