"""Extractive QA: SQuAD metrics, readers, windows and offsets, span search, no-answer threshold, a run."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
import torch

import transferlm
from conftest import FILLER, MONEY, POSITIVE, qa_rows, tiny_config, write_jsonl
from transferlm.config import DataConfig, task_settings
from transferlm.data.records import Record
from transferlm.data.squad import Answer
from transferlm.errors import DataError
from transferlm.evaluation.qa import (
    best_null_threshold,
    exact_match,
    example_scores,
    normalize_answer,
    squad_metrics,
    token_f1,
)
from transferlm.models.load import load_tokenizer
from transferlm.tasks import build_task
from transferlm.tasks.qa import NULL, best_span


def qa_task(**settings):
    return build_task(task_settings("qa", **settings), DataConfig(train="x"))


def read(path, **data):
    return qa_task().__class__(task_settings("qa"), DataConfig(train="x", **data)).read_records(path)


def record(question: str, context: str, *answers: str, rid: str = "r") -> Record:
    return Record(question, context, tuple(Answer(a, context.index(a)) for a in answers), 1, id=rid)


# --- metrics ---
@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Cat!", "cat"),
        ("  an   apple, a pear ", "apple pear"),
        ("theatre Anatomy", "theatre anatomy"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("the", ""),
        ("Denver Broncos.", "denver broncos"),
        ("“curly” quotes", "“curly” quotes"),  # ASCII punctuation only, as the official script
    ],
)
def test_normalisation_follows_the_squad_definition(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1_on_hand_built_cases():
    assert exact_match("the Denver Broncos", "Denver Broncos!") == 1.0
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)  # P 1, R 2/3
    assert token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts are clipped
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "cat") == 0.0 and token_f1("the", "") == 1.0
    # the best over the gold answers; an unanswerable question (no gold) is right only when abstaining
    assert example_scores("broncos", ["Denver Broncos", "Broncos"]) == (1.0, 1.0)
    assert example_scores("", []) == (1.0, 1.0)
    assert example_scores("something", []) == (0.0, 0.0)
    assert example_scores("", ["the", "Paris"]) == (0.0, 0.0)  # a gold that normalises to nothing is dropped


def test_metrics_break_down_answerable_and_unanswerable():
    result = squad_metrics(["Paris", "", "the moon", ""], [["Paris"], [], ["Mars"], ["Rome"]])
    assert result["exact_match"] == 0.5 and result["n"] == 4
    assert result["has_answer_n"] == 3 and result["has_answer_exact_match"] == pytest.approx(1 / 3)
    assert result["no_answer_n"] == 1 and result["no_answer_f1"] == 1.0
    assert "has_answer_n" not in squad_metrics(["Paris"], [["Paris"]])  # v1.1: no breakdown


def test_null_threshold_maximises_f1_and_keeps_tied_margins_together():
    # margins (null - span score); span F1 if answered; answerable?
    margins, span_f1, answerable = [3.0, 1.0, -2.0, 1.0], [0.0, 1.0, 1.0, 0.0], [False, True, True, False]
    threshold, f1 = best_null_threshold(margins, span_f1, answerable)
    # abstaining on the 3.0 question only is best: 1 + 1 + 1 + 0 (the two at 1.0 switch together: +1 -1)
    assert 1.0 < threshold < 3.0 and f1 == pytest.approx(3 / 4)
    decided = [m > threshold for m in margins]
    assert decided == [True, False, False, False]


# --- span search ---
def test_best_span_picks_the_best_legal_span_across_windows():
    offsets = [None, None, (0, 3), (4, 7), (8, 11), (12, 15), None]
    start = np.array([9.0, 0, 1, 0, 8, 0, 0])  # position 0 (outside the context) scores highest
    end = np.array([9.0, 0, 7, 0, 0, 1, 0])  # the best end (2) is before the best start (4)
    first = best_span([(start, end, offsets)], n_best=5, max_answer_length=30)
    assert (first.start, first.end) == (4, 5)  # 8 + 1 beats 1 + 7
    second = (np.array([0.0, 0, 0, 6, 0, 0, 0]), np.array([0.0, 0, 0, 0, 0, 5, 0]), offsets)
    found = best_span([(start, end, offsets), second], n_best=5, max_answer_length=30)
    assert (found.window, found.start, found.end, found.score) == (1, 3, 5, 11.0)
    # too long: the 3-token span is illegal at max_answer_length 2, so the 2-token one wins
    assert (best_span([second], n_best=5, max_answer_length=2).start,) == (3,)
    assert best_span([(start, end, [None] * 7)], 5, 30) is None


# --- data ---
def test_squad_json_v2_and_both_jsonl_answer_forms_read(tmp_path):
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "a", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "b", "question": "Where is Rome?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "France", "answer_start": 12}]}]}]}]}
    (tmp_path / "d.json").write_text(json.dumps(squad))
    records, problems = read(tmp_path / "d.json")
    assert problems == [] and [r.id for r in records] == ["a", "b"]
    assert records[0].label == (Answer("France", 12),) and records[1].label == ()
    rows = [{"id": "x", "question": "q?", "context": "Paris is in France.", "answers": {"text": ["France"],
                                                                                       "answer_start": [12]}},
            {"question": "q?", "context": "Paris", "answers": [{"text": "Paris", "answer_start": 0}]}]
    records, problems = read(write_jsonl(tmp_path / "d.jsonl", rows))
    assert problems == [] and records[0].label == (Answer("France", 12),) and records[1].id == "2"


def test_bad_questions_are_reported_at_once_with_ids(tmp_path, caplog):
    rows = [
        {"id": "ok", "question": "q", "context": "abc def", "answers": [{"text": "def", "answer_start": 4}]},
        {"id": "noq", "question": " ", "context": "abc", "answers": []},
        {"id": "noc", "question": "q", "answers": []},
        {"id": "far", "question": "q", "context": "abc", "answers": [{"text": "abc", "answer_start": 9}]},
        {"id": "noans", "question": "q", "context": "abc"},
    ]
    records, problems = read(write_jsonl(tmp_path / "bad.jsonl", rows))
    text = "\n".join(problems)
    for rid, what in (("noq", "no question"), ("noc", "no context"), ("far", "answer_start outside the context"),
                      ("noans", "no answers")):
        assert any(rid in p and what in p for p in problems), text
    assert [r.id for r in records] == ["ok"]


def test_answers_that_do_not_match_the_context_are_reported_and_left_out(tmp_path, caplog):
    rows = [{"id": "half", "question": "q", "context": "abc def", "answers": [
                {"text": "def", "answer_start": 4}, {"text": "xyz", "answer_start": 0}]},
            {"id": "gone", "question": "q", "context": "abc def", "answers": [{"text": "def", "answer_start": 0}]}]
    with caplog.at_level(logging.WARNING):
        records, problems = read(write_jsonl(tmp_path / "m.jsonl", rows))
    assert problems == []
    assert [(r.id, r.label) for r in records] == [("half", (Answer("def", 4),))]  # never "unanswerable"
    warned = caplog.text
    assert "2 question(s) have answers whose text differs" in warned and "half, gone" in warned
    assert "1 question(s) have no answer left" in warned and "gone" in warned


def test_unanswerable_questions_without_unanswerable_training_data_are_an_error():
    task = qa_task()
    train = [record("q", "abc def", "def")]
    problems = task.fit_labels(train, {"dev.jsonl": [record("q", "abc", rid="z")]})
    assert len(problems) == 1 and "dev.jsonl" in problems[0] and "z" in problems[0]


# --- windows and offsets ---
def long_records(n: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        words = [rng.choice(FILLER + POSITIVE) for _ in range(rng.randint(5, 60))]
        at = rng.randrange(len(words))
        length = rng.randint(1, 3)
        words[at:at] = rng.sample(MONEY, length)
        context = " ".join(words)
        start = len(" ".join(words[:at])) + (1 if at else 0)
        text = " ".join(words[at:at + length])
        records.append(Record("the film", context, (Answer(text, start),), i, id=f"l{i}"))
    return records


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_windows_never_lose_an_answer_that_fits_and_offsets_slice_to_it(tiny_model_dir, stride):
    tokenizer = load_tokenizer(tiny_model_dir)
    task = qa_task(stride=stride)
    records = long_records(60, seed=stride)
    features = task.encode(tokenizer, records, max_length=20)  # 15 context tokens per window
    by_example: dict[int, list[dict]] = {}
    for item in features.items:
        assert len(item["input_ids"]) <= 20
        assert item["input_ids"][1:3] == tokenizer("the film", add_special_tokens=False)["input_ids"]  # never cut
        by_example.setdefault(item["example"], []).append(item)
    for n, rec in enumerate(records):
        windows = by_example[n]
        covered = set()
        for item in windows:
            covered |= {o for o in item["offsets"] if o is not None}
            s, e = item["labels"]
            if (s, e) != (NULL, NULL):
                assert rec.text_pair[item["offsets"][s][0]:item["offsets"][e][1]] == rec.label[0].text
        words = {(m, m + len(w)) for m, w in _word_spans(rec.text_pair)}
        assert words <= covered  # every context word is in some window
        assert any(item["labels"] != (NULL, NULL) for item in windows)  # 1-3 word answers always fit


def _word_spans(text: str):
    position = 0
    for word in text.split(" "):
        yield position, word
        position += len(word) + 1


def test_an_answer_no_window_can_hold_is_fatal_in_train_and_a_warning_elsewhere(tiny_model_dir, tmp_path, caplog):
    tokenizer = load_tokenizer(tiny_model_dir)
    context = " ".join(["film"] * 10 + MONEY * 3 + ["film"] * 10)
    answer = " ".join(MONEY * 3)  # 12 tokens; a window holds 11 context tokens at max_length 16
    bad = {"id": "toolong", "question": "the film", "context": context,
           "answers": [{"text": answer, "answer_start": context.index(answer)}]}
    features = qa_task().encode(tokenizer, [record("the film", context, answer, rid="toolong")], max_length=16)
    assert "toolong" in features.problems[0] and "fits wholly inside one window" in features.problems[0]
    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(8, seed=1, words=(3, 5)) + [bad]),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(4, seed=2, words=(3, 5)) + [bad])}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", max_steps=1)
    config["model"]["max_length"] = 16
    config["task"] = {"type": "qa"}
    with pytest.raises(DataError, match="train: 1 question.*toolong"):
        transferlm.train(config)
    assert not (tmp_path / "run").exists()  # nothing written before the data is known good
    config["data"]["train"] = str(write_jsonl(tmp_path / "train2.jsonl", qa_rows(8, seed=1, words=(3, 5))))
    with caplog.at_level(logging.WARNING):
        transferlm.train(config)
    assert "validation: 1 question(s) have no answer that fits" in caplog.text


def test_a_question_too_long_for_the_window_is_reported_never_cut(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    long_question = Record(" ".join(FILLER * 2), "bank", (Answer("bank", 0),), 1, id="wordy")
    with pytest.raises(DataError) as error:
        qa_task().encode(tokenizer, [long_question], max_length=32)
    assert "wordy" in str(error.value) and "raise model.max_length" in str(error.value)


def test_predicted_spans_slice_the_context_to_the_predicted_text(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    task = qa_task(stride=4)
    records = long_records(30, seed=7)
    features = task.encode(tokenizer, records, max_length=20, with_labels=False)
    generator = torch.Generator().manual_seed(0)
    outputs = [torch.randn(len(item["input_ids"]), 2, generator=generator) for item in features.items]
    predictions = task.predictions(outputs, features, records)
    assert len(predictions) == len(records)
    for rec, p in zip(records, predictions, strict=True):
        assert p["no_answer"] is False  # trained without unanswerable questions: it always answers
        assert rec.text_pair[p["start"]:p["end"]] == p["answer"] and p["answer"]
        assert 0 < p["score"] <= 1


def test_no_answer_follows_the_tuned_threshold():
    task = qa_task()
    assert task.fit_labels([record("q", "abc def", "def"), record("q", "abc")], {}) == []
    assert task.allow_null
    offsets = [None, (0, 3), (4, 7)]
    item = {"input_ids": [1, 2, 3], "example": 0, "offsets": offsets, "context": "abc def", "answers": ("def",),
            "labels": (2, 2)}
    other = {**item, "example": 1, "answers": ()}
    from transferlm.tasks.base import Features

    features = Features([item, other], [3, 3])
    # question 0: span (2, 2) scores 10 vs null 2; question 1: span 6 vs null 8
    outputs = [torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]]), torch.tensor([[4.0, 4.0], [3.0, 3.0], [0, 0]])]
    assert task.calibrate(outputs, features)["validation_f1"] == 1.0
    assert -8.0 < task.null_threshold < 2.0
    predictions = task.predictions(outputs, features, [None, None])
    assert predictions[0]["answer"] == "def" and predictions[1]["no_answer"] is True
    assert task.metrics(outputs, features)["f1"] == 1.0


# --- a real run ---
def test_qa_run_learns_saves_and_reloads_to_identical_answers(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(48, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(16, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=12, lr=5e-3)
    config["task"] = {"type": "qa", "stride": 4}
    config["data"]["test"] = str(write_jsonl(tmp_path / "test.jsonl", qa_rows(16, seed=3)))
    result = transferlm.train(config)
    assert result.test["f1"] >= 0.8, result.test  # the answer is the one market word: learnable
    rows = qa_rows(6, seed=9)
    inputs = [{"question": r["question"], "context": r["context"]} for r in rows]
    first = transferlm.load(result.run_dir).predict(inputs)
    second = transferlm.load(result.run_dir).predict(inputs)
    assert first == second
    for prediction, row in zip(first, rows, strict=True):
        assert row["context"][prediction["start"]:prediction["end"]] == prediction["answer"]
    evaluated = transferlm.load(result.run_dir).evaluate(files["dev"])
    assert evaluated["f1"] == pytest.approx(result.summary.validation["f1"])


def test_compare_runs_qa_with_the_overlap_baseline(tiny_model_dir, tmp_path):
    from transferlm.config.load import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(24, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(8, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "compare", epochs=2, lr=5e-3)
    config["task"] = {"type": "qa", "stride": 4}
    report = compare(build_config(config), CompareSettings(members=["frozen", "overlap"], seeds=[0]))
    rows = {r["title"]: r for r in report["members"]}
    assert rows["overlap"]["kind"] == "baseline" and 0 <= rows["overlap"]["summary"]["mean"] <= 1
    assert rows["frozen"]["kind"] == "transfer"
    written = [json.loads(line) for line in (tmp_path / "compare" / "data" / "train.jsonl").read_text().splitlines()]
    assert written[0] == qa_rows(24, seed=1)[0]  # the split files keep ids, contexts and answer offsets
    with pytest.raises(Exception, match="baseline 'crf' does not apply to task qa"):
        compare(build_config({**config, "output": str(tmp_path / "c2")}), CompareSettings(members=["crf"]))


def test_cli_predicts_answers_from_jsonl(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(16, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(8, seed=2))}
    cli = [sys.executable, "-m", "transferlm"]
    run = tmp_path / "run"
    subprocess.run([*cli, "train", "--model", str(tiny_model_dir), "--task", "qa", "--train", str(files["train"]),
                    "--validation", str(files["dev"]), "--max-length", "32", "--max-steps", "2", "--no-progress",
                    "--output", str(run)], check=True, capture_output=True)
    questions = write_jsonl(tmp_path / "ask.jsonl", [{"id": "k", "question": "the film", "context": "a bank story"},
                                                     {"question": "plot", "context": "stock"}])
    out = subprocess.run([*cli, "predict", str(run), "--input", str(questions)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [r["id"] for r in rows] == ["k", "2"]
    for row in rows:
        assert row["context"][row["start"]:row["end"]] == row["answer"]
    missing = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q"}])
    failed = subprocess.run([*cli, "predict", str(run), "--input", str(missing)], capture_output=True, text=True)
    assert failed.returncode != 0 and "no context" in failed.stderr


@pytest.mark.slow
def test_squad_dev_reads_every_question(shared_data):
    records, problems = read(shared_data / "squad" / "dev-v1.1.json")
    assert problems == [] and len(records) == 10570
    assert all(r.text_pair[a.start:a.end] == a.text for r in records for a in r.label)


def test_malformed_squad_json_is_reported_with_its_place(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"data": [{"paragraphs": ["oops"]}, {"title": "no paragraphs"}]}))
    records, problems = read(tmp_path / "bad.json")
    assert records == [] and "data[0].paragraphs[0], data[1]" in problems[0]


def test_the_validation_carve_out_never_splits_a_context(tmp_path):
    from transferlm.config.load import build_config
    from transferlm.runs.prepare import load_splits

    rows = []
    for c in range(20):
        context = f"context {c} bank"
        rows += [{"id": f"{c}-{q}", "question": f"q{q}", "context": context,
                  "answers": [{"text": "bank", "answer_start": context.index("bank")}]} for q in range(3)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    config = build_config({"task": {"type": "qa"}, "data": {"train": str(train), "validation_split": 0.2},
                           "output": str(tmp_path / "run")})
    splits = load_splits(config, qa_task())
    assert len(splits.validation) == 12 and "grouped carve-out" in splits.validation_source
    assert not {r.text_pair for r in splits.train} & {r.text_pair for r in splits.validation}
