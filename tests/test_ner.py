"""NER: tag schemes, subword alignment, windows, metrics, decoding, offsets, bad input, and the task end to end."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import transferlm
from conftest import ner_rows, tiny_config, write_jsonl
from transferlm.config import DataConfig, build_config, task_settings
from transferlm.data import tagging
from transferlm.data.records import Record
from transferlm.data.sequences import SequenceColumns, read_sequence_records
from transferlm.evaluation.ner import entity_metrics
from transferlm.tasks import build_task
from transferlm.tasks.ner import IGNORE, viterbi
from transferlm.tasks.windows import plan_windows


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """The bundled model's real WordPiece tokenizer: it splits words into several subwords."""
    from transferlm.models.load import load_tokenizer
    from transferlm.models.resolve import resolve_model

    return load_tokenizer(resolve_model("minilm").path)


def ner_task(records, **task) -> object:
    built = build_task(task_settings("ner", **task), DataConfig(train="x"))
    assert built.fit_labels(records, {}) == []
    return built


def one_hot_outputs(task, features) -> list[torch.Tensor]:
    """Outputs that put all mass on each item's own label (uniform where it has none)."""
    rows = []
    for item in features.items:
        row = torch.zeros(len(item["input_ids"]), len(task.labels))
        for p, label in enumerate(item["labels"]):
            if label != IGNORE:
                row[p, label] = 10.0
        rows.append(row)
    return rows


SCHEME_CASES = {
    "bio": (["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]),
    "iob1": (["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]),
    "bioes": (["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]),
}
WORDS = ["Schwarzenegger", "unbelievably", "in", "Reykjavik", "Düsseldorf-Nord", "3.5bn"]


@pytest.mark.parametrize("scheme", SCHEME_CASES)
def test_each_scheme_is_detected_and_converted_to_bio(scheme):
    raw, bio = SCHEME_CASES[scheme]
    assert tagging.detect_scheme([raw]) == scheme
    assert tagging.to_bio(raw, scheme) == (bio, [])  # IOB1 entities start with I-: normal, not stray


@pytest.mark.parametrize("all_subwords", [False, True])
@pytest.mark.parametrize("scheme", SCHEME_CASES)
def test_tags_round_trip_through_subword_labels(minilm_tokenizer, scheme, all_subwords):
    bio = SCHEME_CASES[scheme][1]
    records = [Record(" ".join(WORDS), None, tuple(bio), 1, tuple(WORDS))]
    task = ner_task(records, label_all_subwords=all_subwords)
    features = task.encode(minilm_tokenizer, records, max_length=64)
    item = features.items[0]
    assert len(item["input_ids"]) > len(WORDS) + 2, "the words must split into several subwords"
    firsts = [p for p, w in enumerate(item["word_ids"]) if w >= 0 and item["word_ids"][p - 1] != w]
    assert [task.labels[item["labels"][p]] for p in firsts] == bio  # the word's tag sits on its first subword
    later = [p for p, w in enumerate(item["word_ids"]) if w >= 0 and p not in firsts]
    if all_subwords:
        assert all(task.labels[item["labels"][p]] == tagging.continuation(bio[item["word_ids"][p]]) for p in later)
    else:
        assert all(item["labels"][p] == IGNORE for p in later)
    (logp, gold), = task.word_outputs(one_hot_outputs(task, features), features)
    assert [task.labels[t] for t in gold] == bio
    assert [task.labels[t] for t in task.decode(logp)] == bio


def test_a_word_that_tokenises_to_nothing_keeps_its_tag(minilm_tokenizer):
    tokens = ("EU", "\u200b", "Paris")
    records = [Record("", None, ("B-ORG", "B-LOC", "B-PER"), 1, tokens)]
    task = ner_task(records)
    features = task.encode(minilm_tokenizer, records, max_length=16)
    (_, gold), = task.word_outputs(one_hot_outputs(task, features), features)
    assert [task.labels[t] for t in gold] == ["B-ORG", "B-LOC", "B-PER"]


def test_windows_cover_every_word_and_respect_the_budget():
    rng = random.Random(0)
    for _ in range(200):
        counts = [rng.randint(1, 4) for _ in range(rng.randint(1, 80))]
        budget, stride = rng.randint(4, 20), rng.randint(0, 8)
        windows = plan_windows(counts, budget, stride)
        assert windows[0][0] == 0 and windows[-1][1] == len(counts)
        for (a, b), (c, _) in zip(windows, windows[1:], strict=False):
            assert a < c <= b, "windows advance and leave no gap"
            assert sum(counts[c:b]) <= stride
        assert all(sum(counts[a:b]) <= budget or b - a == 1 for a, b in windows)


def test_long_sentences_are_windowed_and_merged_back_without_losing_a_word(minilm_tokenizer):
    rng = random.Random(1)
    pool = [("Reykjavik", "B-LOC"), ("Schwarzenegger", "B-PER"), ("the", "O"), ("unbelievably", "O"), ("Co", "I-ORG")]
    tokens, tags = ["Acme"], ["B-ORG"]
    for _ in range(150):
        word, tag = rng.choice(pool)
        if tag == "I-ORG" and tags[-1] not in ("B-ORG", "I-ORG"):
            tag = "O"
        tokens.append(word)
        tags.append(tag)
    records = [Record("", None, tuple(tags), 1, tuple(tokens)), Record("", None, ("B-LOC",), 2, ("Paris",))]
    task = ner_task(records, stride=8)
    features = task.encode(minilm_tokenizer, records, max_length=32)
    windows = [item for item in features.items if item["example"] == 0]
    assert len(windows) > 5 and all(len(item["input_ids"]) <= 32 for item in windows)
    merged = task.word_outputs(one_hot_outputs(task, features), features)
    assert [task.labels[t] for t in merged[0][1]] == tags and [task.labels[t] for t in merged[1][1]] == ["B-LOC"]
    assert task.metrics(one_hot_outputs(task, features), features)["f1"] == 1.0


def test_entity_metrics_on_hand_built_cases():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "I-PER"]]
    m = entity_metrics(gold, predicted)
    # entities: gold 4 (PER, LOC, ORG, PER); predicted 3 valid ones under strict IOB2 (PER, ORG, ORG)
    # plus an I-PER after O, which strict mode does not count; correct: PER, ORG in sentence 2 -> 2.
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert m["per_class"]["PER"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["LOC"]["recall"] == 0.0 and m["per_class"]["ORG"]["precision"] == 0.5
    assert m["token_accuracy"] == pytest.approx(5 / 7)
    labels, matrix = m["confusion_matrix"]["labels"], m["confusion_matrix"]["matrix"]
    assert matrix[labels.index("LOC")][labels.index("ORG")] == 1
    assert m["n"] == 2


def test_viterbi_only_emits_valid_bio():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    logp = np.log(np.array([
        [0.1, 0.2, 0.6, 0.05, 0.05],  # I-PER is likeliest at the start: not allowed
        [0.1, 0.1, 0.2, 0.1, 0.5],  # I-LOC after a PER: not allowed
        [0.6, 0.1, 0.1, 0.1, 0.1],
    ]))
    path = [labels[i] for i in viterbi(logp, labels)]
    assert path == ["B-PER", "I-PER", "O"]
    assert tagging.to_bio(path, "bio")[1] == []


def test_raw_text_entities_come_back_with_offsets_that_slice_the_text(minilm_tokenizer, tmp_path):
    text = "Angela Merkel met NYC-based reps in Düsseldorf."
    entities = [{"start": 0, "end": 13, "label": "PER"}, {"start": 18, "end": 21, "label": "LOC"},
                {"start": 36, "end": 46, "label": "LOC"}]
    path = write_jsonl(tmp_path / "spans.jsonl", [{"text": text, "entities": entities}])
    records, problems = read_sequence_records(path, DataConfig(train=path))
    assert problems == []
    record = records[0]
    assert [text[s:e] for s, e in record.offsets] == list(record.tokens)
    assert "NYC" in record.tokens  # split at the entity boundary inside "NYC-based"
    task = ner_task(records)
    features = task.encode(minilm_tokenizer, records, max_length=64)
    (prediction,) = task.predictions(one_hot_outputs(task, features), features, records)
    assert [(e["start"], e["end"], e["label"]) for e in prediction["entities"]] == [
        (e["start"], e["end"], e["label"]) for e in entities]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in prediction["entities"])
    assert all(0 < e["score"] <= 1 for e in prediction["entities"])


def test_conll_reader_handles_docstart_blank_lines_tag_column_and_iob1(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n\n"
                    "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n")
    records, problems = read_sequence_records(path, DataConfig(train=path))
    assert problems == []
    assert [(r.tokens, r.label, r.line) for r in records] == [
        (("EU", "rejects"), ("B-ORG", "O"), 3), (("Peter", "Blackburn"), ("B-PER", "I-PER"), 7)]
    chunks, _ = read_sequence_records(path, DataConfig(train=path), columns=SequenceColumns(conll_tag_column=2))
    assert chunks[0].label == ("B-NP", "B-VP")


def test_every_bad_input_problem_is_reported_at_once_with_file_and_line(tmp_path):
    tokens = tmp_path / "tokens.jsonl"
    write_jsonl(tokens, [{"tokens": ["a", "b"], "tags": ["O"]}, {"tokens": ["c"], "tags": ["O"]},
                         {"tokens": [], "tags": []}])
    _, problems = read_sequence_records(tokens, DataConfig(train=tokens))
    assert any("1 row(s) have a different number of tokens and tags (lines 1)" in p for p in problems)
    assert any("no non-empty list of strings in 'tokens' (lines 3)" in p for p in problems)

    strict = tmp_path / "strict.jsonl"
    write_jsonl(strict, [{"tokens": ["a", "b"], "tags": ["B-PER", "O"]}, {"tokens": ["c"], "tags": ["I-PER"]},
                         {"tokens": ["d"], "tags": ["PER"]}])
    _, problems = read_sequence_records(strict, DataConfig(train=strict))
    assert problems and "malformed tags (e.g. 'PER')" in problems[0] and "(lines 3)" in problems[0]
    write_jsonl(strict, [{"tokens": ["a", "b"], "tags": ["B-PER", "O"]}, {"tokens": ["c"], "tags": ["I-PER"]}])
    _, problems = read_sequence_records(strict, DataConfig(train=strict), columns=SequenceColumns(tag_scheme="bio"))
    assert "continues no entity under the BIO scheme (lines 2)" in problems[0]
    repaired, problems = read_sequence_records(strict, DataConfig(train=strict),
                                               columns=SequenceColumns(tag_scheme="iob1"))
    assert problems == [] and repaired[1].label == ("B-PER",)

    spans = tmp_path / "spans.jsonl"
    write_jsonl(spans, [
        {"text": "New York City", "entities": [{"start": 0, "end": 8, "label": "LOC"},
                                             {"start": 4, "end": 13, "label": "LOC"}]},
        {"text": "Paris", "entities": [{"start": 0, "end": 9, "label": "LOC"}]},
        {"text": "Rome", "entities": [{"start": 0, "end": 4, "label": "LOC"}]},
    ])
    _, problems = read_sequence_records(spans, DataConfig(train=spans))
    assert any("line 1: entities overlap: 0..8 (LOC) and 4..13 (LOC)" in p for p in problems)
    assert any("line 2: entity 0 (0..9, LOC) falls outside the text (length 5)" in p for p in problems)
    assert len(problems) == 2

    conll = tmp_path / "short.conll"
    conll.write_text("EU B-ORG\nrejects\n")
    _, problems = read_sequence_records(conll, DataConfig(train=conll))
    assert "have no tag column" in problems[0] and "(lines 2)" in problems[0]

    empty = tmp_path / "empty.conll"
    empty.write_text("\n-DOCSTART- O\n\n")
    assert read_sequence_records(empty, DataConfig(train=empty))[1] == [f"{empty}: the file is empty; it needs at "
                                                                        "least one sentence"]


def test_unseen_entity_types_and_wrong_task_options_are_reported(tmp_path):
    from transferlm.errors import ConfigError

    records = [Record("", None, ("B-PER",), 1, ("a",))]
    task = ner_task(records)
    problems = task.check_labels({"dev.jsonl": [Record("", None, ("B-LOC",), 4, ("b",))]})
    assert problems == ["dev.jsonl: 1 row(s) have entity type 'LOC', which never occurs in training (lines 4); "
                        "known types are PER; add training examples of it or retag those sentences"]
    with pytest.raises(ConfigError, match="task.pooling: not a setting of task ner"):
        build_config({"task": {"type": "ner", "pooling": "mean"}, "data": {"train": "x"}, "output": "o"})


def ner_files(tmp_path) -> dict:
    return {"train": write_jsonl(tmp_path / "train.jsonl", ner_rows(40, seed=1)),
            "dev": write_jsonl(tmp_path / "dev.jsonl", ner_rows(12, seed=2))}


def test_ner_trains_evaluates_predicts_and_reloads_identically(tiny_model_dir, tmp_path):
    files = ner_files(tmp_path)
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=6, lr=5e-3)
    config["task"] = {"type": "ner"}
    config["data"]["test"] = str(files["dev"])
    result = transferlm.train(config)
    assert result.summary.validation["f1"] > 0.8  # money -> ORG, sport -> LOC is easy to learn
    assert result.test["f1"] == result.summary.validation["f1"]
    predictor = transferlm.load(result.run_dir)
    assert predictor.evaluate(files["dev"])["f1"] == result.test["f1"]
    inputs = ["the bank market was a goal", ["team", "and", "stock", "price"]]
    first, second = predictor.predict(inputs), transferlm.load(result.run_dir).predict(inputs)
    assert first == second
    assert {e["label"] for e in first[0]["entities"]} <= {"ORG", "LOC"}
    assert len(first[1]["tags"]) == 4
    assert (result.run_dir / "validation_confusion.txt").is_file()


def test_ner_cli_train_and_predict(tiny_model_dir, tmp_path):
    files = ner_files(tmp_path)
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "transferlm"]
    subprocess.run([*cli, "train", "--task", "ner", "--model", str(tiny_model_dir), "--train", str(files["train"]),
                    "--validation", str(files["dev"]), "--max-length", "32", "--epochs", "1", "--no-progress",
                    "--output", str(run)], check=True, capture_output=True)
    texts = tmp_path / "texts.txt"
    texts.write_text("the bank market\nteam goal\n")
    out = subprocess.run([*cli, "predict", str(run), "--input", str(texts)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [r["line"] for r in rows] == [1, 2] and all("entities" in r for r in rows)


def test_compare_runs_ner_with_the_crf_baseline(tiny_model_dir, tmp_path):
    from transferlm.config.load import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    files = ner_files(tmp_path)
    config = tiny_config(tiny_model_dir, files, tmp_path / "compare", epochs=2, lr=5e-3)
    config["task"] = {"type": "ner"}
    report = compare(build_config(config), CompareSettings(members=["frozen", "crf"], seeds=[0]))
    rows = {r["title"]: r for r in report["members"]}
    assert rows["crf"]["kind"] == "baseline" and 0 < rows["crf"]["summary"]["mean"] <= 1
    assert rows["frozen"]["kind"] == "transfer"
    with pytest.raises(Exception, match="baseline 'tfidf' does not apply to task ner"):
        compare(build_config({**config, "output": str(tmp_path / "c2")}), CompareSettings(members=["tfidf"]))


@pytest.mark.slow
def test_conll2003_files_read_with_the_published_counts(shared_data):
    counts = {}
    for split, sentences in (("train", 14041), ("valid", 3250), ("test", 3453)):
        path = shared_data / "conll2003" / f"{split}.txt"
        records, problems = read_sequence_records(path, DataConfig(train=path))
        assert problems == [] and len(records) == sentences
        counts[split] = {t: sum(1 for r in records for s in tagging.spans(r.label) if s.label == t)
                         for t in ("PER", "LOC", "ORG", "MISC")}
    assert counts["train"] == {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438}
    assert counts["test"] == {"PER": 1617, "LOC": 1668, "ORG": 1661, "MISC": 702}
