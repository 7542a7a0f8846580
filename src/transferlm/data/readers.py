"""Readers turn a file into rows (line number + column mapping). One registry entry per format."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlm.errors import DataError
from transferlm.registry import Registry

MAX_LISTED = 5  # problems of one kind listed by line before summarising with a count


@dataclass(frozen=True)
class Table:
    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]  # the file line (or parquet row) each row came from, for error messages


Reader = Callable[[Path], Table]
READERS: Registry[Reader] = Registry("data format")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


DELIMITED = ("csv", "tsv")  # the formats with an optional header row


def read_table(
    path: Path, fmt: str = "auto", header: bool = True, quoting: bool = True, extra_columns: str = "error"
) -> Table:
    """Rows of a table file. csv/tsv only: ``header=False``: no header row, columns named "0", "1", ...;
    ``quoting=False``: a csv ``"`` is an ordinary character (tsv never quotes); ``extra_columns="ignore"``:
    cells beyond the header's (or the first row's) count are dropped instead of reported."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (relative paths start at {Path.cwd()})")
    if fmt == "auto":
        fmt = EXTENSIONS.get(path.suffix.lower(), "")
        if not fmt:
            raise DataError(
                f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                f"rename it to one of {', '.join(EXTENSIONS)} or set data.format"
            )
    if fmt in DELIMITED:
        return READERS.get(fmt)(path, header=header, quoting=quoting, extra_columns=extra_columns)
    if not header:
        raise DataError(f"{path}: data.header: false applies to csv and tsv files only; this is {fmt}, whose "
                        "columns always have names")
    return READERS.get(fmt)(path)


def read_text(path: Path) -> str:
    return decode_utf8(path.read_bytes(), path)


def read_stream(stream: Any, where: str) -> str:
    """An open text stream's contents, checked as a file's are: read as bytes where it has them (Python's own
    decoding would turn bytes that are not UTF-8 into lone surrogates under a C locale)."""
    if hasattr(stream, "buffer"):
        return decode_utf8(stream.buffer.read(), where)
    text = stream.read()  # a text-only stream put in place of stdin by a caller
    if problem := lone_surrogate(text):
        raise DataError(f"{where}: {problem}")
    return text


def decode_utf8(raw: bytes, where: str | Path) -> str:
    """Bytes as UTF-8 text (a byte-order mark dropped); bytes that are not UTF-8 raise ``DataError`` with the line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{where} line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`"
        ) from e


def text_lines(text: str) -> list[str]:
    """Lines ended by \\n, \\r\\n or \\r (mixed endings allowed), but not by the other characters
    ``str.splitlines`` breaks at (U+2028, U+0085, form feeds ...), which are text inside a line."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def lone_surrogate(value: Any) -> str | None:
    """Where a value (a string, or strings inside lists, tuples and dicts) holds a lone surrogate, described;
    None when it holds none. JSON can spell one (``"\\ud800"``), yet it is half of a UTF-16 pair, not a
    character: it cannot be written as UTF-8 and no tokenizer takes it."""
    pending = [value]  # a stack, not recursion: a request may nest as deeply as the JSON parser allows
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as e:
                return (f"a lone surrogate U+{ord(item[e.start]):04X} at character {e.start}, which is not Unicode "
                        "text; send both halves of a surrogate pair (e.g. \\ud83d\\ude00), or the character itself")
    return None


def summarise_lines(where: str | Path, what: str, lines: list[int], fix: str) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_LISTED])
    more = f" and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return f"{where}: {len(lines)} row(s) {what} (lines {shown}{more}); {fix}"


def _read_delimited(
    path: Path, delimiter: str, quoting: int, has_header: bool = True, extra_columns: str = "error"
) -> Table:
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    try:
        first = next(reader)
    except StopIteration:
        needs = "a header row and data rows" if has_header else "data rows"
        raise DataError(f"{path}: the file is empty; it needs {needs}") from None
    header = [h.strip() for h in first] if has_header else [str(i) for i in range(len(first))]
    rows, lines, ragged, longer = [], [], [], False
    # Without a header the first row is data; chained lazily, so reader.line_num stays each row's line.
    for record in reader if has_header else itertools.chain([first], reader):
        if not record or record == [""]:
            continue  # blank line
        if len(record) > len(header) and extra_columns == "ignore":
            record = record[: len(header)]
        if len(record) != len(header):
            ragged.append(reader.line_num)
            longer = longer or len(record) > len(header)
            continue
        rows.append(dict(zip(header, record, strict=False)))
        lines.append(reader.line_num)
    if ragged:
        sep = "tab" if delimiter == "\t" else repr(delimiter)
        fix = f"check the {sep} separators and quoting on those lines"
        if longer:
            fix += "; data.extra_columns: ignore drops cells beyond the first columns"
        raise DataError(
            summarise_lines(
                path,
                f"with a field count different from the {'header' if has_header else 'first row'}'s {len(header)}",
                ragged,
                fix,
            )
        )
    return Table(path, header, rows, lines)


def read_csv(path: Path, header: bool = True, quoting: bool = True, extra_columns: str = "error") -> Table:
    return _read_delimited(path, ",", csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE, header, extra_columns)


def read_tsv(path: Path, header: bool = True, quoting: bool = True, extra_columns: str = "error") -> Table:
    # TSV (as in GLUE) does not quote fields; a literal `"` is text. Quoted reading would merge the rows of
    # files such as MNLI and the STS Benchmark, whose sentences open quotes they never close; so
    # ``quoting`` changes nothing here.
    return _read_delimited(path, "\t", csv.QUOTE_NONE, header, extra_columns)


def read_jsonl(path: Path) -> Table:
    rows, lines, bad, not_objects, surrogates = [], [], [], [], []
    columns: dict[str, None] = {}
    # text_lines, not str.splitlines: that would also break at characters a JSON string may hold raw (U+2028,
    # U+0085), cutting a valid row in two; a raw \r or \n cannot be inside a JSON string.
    for number, line in enumerate(text_lines(read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if not isinstance(value, dict):
            not_objects.append(number)
            continue
        if lone_surrogate(value):
            surrogates.append(number)
            continue
        columns.update(dict.fromkeys(value))
        rows.append(value)
        lines.append(number)
    problems = []
    if bad:
        problems.append(
            summarise_lines(path, "are not valid JSON", bad, "fix or remove those lines (one JSON object per line)")
        )
    if not_objects:
        problems.append(
            summarise_lines(
                path, "are JSON but not objects", not_objects, 'write each line as {"text": ..., "label": ...}'
            )
        )
    if surrogates:
        problems.append(summarise_lines(path, "hold a lone surrogate (an escape such as \\ud800 without its pair)",
                                        surrogates, "fix the text those lines came from; it is not valid Unicode"))
    if problems:
        raise DataError(problems)
    return Table(path, list(columns), rows, lines)


def read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError(f"{path}: reading Parquet needs pyarrow; `pip install pyarrow`") from e
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    rows = table.to_pylist()
    return Table(path, table.column_names, rows, list(range(1, len(rows) + 1)))


READERS.register("csv", read_csv)
READERS.register("tsv", read_tsv)
READERS.register("jsonl", read_jsonl)
READERS.register("parquet", read_parquet)
