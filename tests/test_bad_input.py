"""Property-based tests: every data reader and every prediction entry point (Python, CLI, HTTP), fed generated
hostile text, either works or fails with a named error (``DataError`` / exit 1 with a message / HTTP 4xx); never
a traceback and never a 5xx."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import transferlm  # noqa: E402
from conftest import ner_rows, qa_rows, sentiment_rows, tiny_config, write_jsonl  # noqa: E402
from transferlm.cli.main import main  # noqa: E402
from transferlm.config import DataConfig, task_settings  # noqa: E402
from transferlm.errors import DataError  # noqa: E402
from transferlm.tasks import build_task  # noqa: E402

# The characters that have broken text pipelines: lone surrogates (valid JSON escapes, not Unicode), NUL and
# other controls, bidirectional overrides, zero-width characters, combining marks, every kind of line end.
NASTY = ["\ud800", "\udfff", "\x00", "\x07", "\x1b", "\x7f", "\u202e", "\u200f", "\u200b", "\ufeff", "\u2060",
         "\u0301", "\u0336", "\r\n", "\r", "\n", "\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\t",
         "\ufffd", "\U0001f600", "\uffff", "é", '"', "'", ",", "\\", "{", "}"]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(st.characters(exclude_categories=()), max_size=8)),
                      max_size=12).map("".join)
BIG = "x" * 1_000_000  # a 1 MB string: every entry point must take it (cut to the window) or refuse it by name
FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# --- readers: the records hold exactly the text written, or a DataError names the problem ---

def _classification():
    return build_task(task_settings("classification"), DataConfig(train="x"))


def _read(task, path: Path):
    try:
        records, problems = task.read_records(path)
    except DataError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
        return None
    assert all(isinstance(p, str) and p for p in problems)
    return records


@FAST
@given(texts=st.lists(nasty_text, min_size=1, max_size=5))
def test_csv_jsonl_and_parquet_rows_read_back_the_text_written_or_a_named_error(tmp_path, texts):
    rows = [{"text": t, "label": "pos" if i % 2 else "neg"} for i, t in enumerate(texts)]
    kept = {t for t in texts if t.strip()}  # blank text is reported, not read
    for suffix in ("csv", "jsonl", "parquet"):
        path = tmp_path / f"data.{suffix}"
        if suffix == "csv":
            with path.open("w", encoding="utf-8", errors="surrogatepass", newline="") as f:
                csv.DictWriter(f, ["text", "label"]).writerows([{"text": "text", "label": "label"}, *rows])
        elif suffix == "jsonl":  # json escapes a lone surrogate as \udXXX: valid JSON, not Unicode
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        else:
            pa = pytest.importorskip("pyarrow")
            import pyarrow.parquet as pq
            if not all(_encodable(t) for t in texts):
                continue  # Arrow strings are UTF-8: a lone surrogate cannot be written at all
            pq.write_table(pa.Table.from_pylist(rows), path)
        records = _read(_classification(), path)
        if records is not None:
            assert {r.text for r in records} <= kept
            if all(_encodable(t) for t in texts) and suffix != "csv":
                assert [r.text for r in records] == [t for t in texts if t.strip()]
        else:
            assert not all(_encodable(t) for t in texts) or not kept


@FAST
@given(raw=st.binary(max_size=200), suffix=st.sampled_from(["csv", "tsv", "jsonl", "txt", "conll", "json"]))
@example(raw=b"text,label\n\xff\xfe bad bytes,pos\n", suffix="csv")
@example(raw=b'{"text": "\\ud800", "label": "pos"}\n', suffix="jsonl")
@example(raw=b'{"text": "a\xe2\x80\xa8b", "label": "pos"}\n', suffix="jsonl")  # a raw U+2028 inside a string
@example(raw=b"EU B-ORG\r\nrejects O\rGerman B-MISC\n\nx\x00y O\n", suffix="conll")
def test_any_bytes_in_any_format_read_or_fail_with_a_named_error(tmp_path, raw, suffix):
    path = tmp_path / f"data.{suffix}"
    path.write_bytes(raw)
    tasks = {"csv": _classification, "tsv": _classification, "jsonl": _classification,
             "txt": lambda: build_task(task_settings("masked-lm"), DataConfig(train="x")),
             "conll": lambda: build_task(task_settings("ner"), DataConfig(train="x")),
             "json": lambda: build_task(task_settings("qa"), DataConfig(train="x"))}
    records = _read(tasks[suffix](), path)
    for record in records or []:
        assert _encodable(record.text) and (record.text_pair is None or _encodable(record.text_pair))


def test_a_raw_line_separator_inside_a_jsonl_string_stays_in_its_row(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "one\u2028two\x85three", "label": "pos"}\n{"text": "four", "label": "neg"}\n',
                    encoding="utf-8")
    records = _read(_classification(), path)
    assert [(r.text, r.line) for r in records] == [("one\u2028two\x85three", 1), ("four", 2)]


def test_a_lone_surrogate_in_jsonl_or_squad_is_named_with_its_line(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"text": "fine", "label": "pos"}, {"text": "\ud800", "label": "neg"}])
    records, problems = _classification().read_records(path)
    assert not records and len(problems) == 1
    assert "1 row(s) hold a lone surrogate" in problems[0] and "(lines 2)" in problems[0]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "a \udc00 b", "qas": [
        {"id": "1", "question": "q?", "answers": [{"text": "a", "answer_start": 0}]}]}]}]}))
    records, problems = build_task(task_settings("qa"), DataConfig(train="x")).read_records(squad)
    assert not records and "data[0].paragraphs[0].qas[0]" in problems[0] and "no lone surrogate" in problems[0]


# --- prediction: Python, CLI and HTTP on trained tiny runs of three tasks ---

@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-input")
    made = {}
    for task, rows in (("classification", sentiment_rows), ("ner", ner_rows), ("qa", qa_rows)):
        files = {"train": write_jsonl(root / f"{task}-train.jsonl", rows(16, seed=1)),
                 "dev": write_jsonl(root / f"{task}-dev.jsonl", rows(8, seed=2))}
        config = tiny_config(tiny_model_dir, files, root / task, epochs=1)
        config["task"] = {"type": task}
        made[task] = transferlm.train(config).run_dir
    return made


def _input(task: str, text: str):
    return {"question": text, "context": text} if task == "qa" else text


def _predict_or_named_error(predictor, task: str, text: str) -> None:
    try:
        predictions = predictor.predict([_input(task, text)])
    except DataError as e:
        assert e.problems[0].startswith("input 1: ")
        assert not _encodable(text) or not text.strip()
        return
    assert len(predictions) == 1 and isinstance(predictions[0], dict)
    json.dumps(predictions, allow_nan=False)  # what the server and the CLI write must be plain JSON


@pytest.mark.parametrize("task", ["classification", "ner", "qa"])
def test_python_predict_takes_any_text_or_names_the_input(runs, task):
    predictor = transferlm.load(runs[task])

    @FAST
    @given(text=nasty_text)
    @example(text="\ud800 lone surrogate")
    @example(text=BIG)
    @example(text="e" + "\u0301" * 5000)
    def check(text):
        _predict_or_named_error(predictor, task, text)

    check()


def test_cli_predict_takes_any_bytes_or_exits_1_with_a_named_error(runs, tmp_path, capsys):
    @settings(max_examples=25, deadline=None, database=None)
    @given(raw=st.binary(max_size=120) | nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
    @example(raw=b"\xed\xa0\x80 a surrogate encoded as bytes\n")
    @example(raw=b"\n \x0c\n")  # blank lines only: skipped, then nothing to predict
    @example(raw=BIG.encode() + b"\r\nsecond\rthird\n")
    def check(raw):
        path = tmp_path / "inputs.txt"
        path.write_bytes(raw)
        code = main(["predict", str(runs["classification"]), "--input", str(path)])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        if code == 0:
            assert all("label" in json.loads(line) for line in out.split("\n") if line)  # not splitlines: U+2028
        else:
            assert code == 1 and "error: " in err  # (after any notice, e.g. of skipped blank lines)

    check()


@pytest.mark.parametrize("task", ["classification", "ner", "qa"])
def test_http_predict_never_answers_5xx(runs, task):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from transferlm.serving.app import ServeSettings, create_app

    with TestClient(create_app(runs[task], ServeSettings()), raise_server_exceptions=False) as http:

        @FAST
        @given(text=nasty_text)
        @example(text="\ud800 lone surrogate")
        def check(text):
            body = json.dumps({"inputs": [_input(task, text)]})  # ensure_ascii: a lone surrogate travels as \ud800
            response = http.post("/v1/predict", content=body, headers={"content-type": "application/json"})
            assert response.status_code < 500, response.text
            if response.status_code == 200:
                assert len(response.json()["predictions"]) == 1
            else:
                assert response.status_code == 422 and response.json()["error"]

        check()

        raw = http.post("/v1/predict", content=b'{"inputs": ["\xff\xfe"]}',
                        headers={"content-type": "application/json"})
        assert raw.status_code == 422 and "not valid JSON" in raw.json()["error"]


def test_io_stdin_with_bytes_that_are_not_utf8_is_a_named_error(runs, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"fine\n\xff bad\n")))
    code = main(["predict", str(runs["classification"]), "--input", "-"])
    assert code == 1 and "stdin line 2: not valid UTF-8 (byte 0xff" in capsys.readouterr().err
