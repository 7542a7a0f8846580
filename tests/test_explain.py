"""`transferlm explain`: integrated-gradients word attributions for classification and regression runs."""

from __future__ import annotations

import json
import random

import pytest

import transferlm
from conftest import FILLER, tiny_config, write_jsonl
from transferlm.cli.main import main
from transferlm.errors import ConfigError
from transferlm.inference.explain import ExplainSettings

pytest.importorskip("captum")

PLANTED = "superb"


def planted_rows(n: int, seed: int) -> list[dict]:
    """Six filler words; the label is whether the planted word is among them."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(6)]
        if i % 2:
            words.insert(rng.randrange(7), PLANTED)
        rows.append({"text": " ".join(words), "label": "pos" if i % 2 else "neg"})
    return rows


@pytest.fixture(scope="module")
def planted_run(tiny_model_no_dropout, tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    files = {"train": write_jsonl(root / "train.jsonl", planted_rows(48, 1)),
             "dev": write_jsonl(root / "dev.jsonl", planted_rows(16, 2))}
    config = tiny_config(tiny_model_no_dropout, files, root / "run", epochs=12, lr=5e-3)
    config["task"] = {"type": "classification", "pooling": "mean", "long_inputs": "windows", "stride": 2}
    result = transferlm.train(config)
    assert result.summary.validation["accuracy"] == 1.0  # the model learned the planted word
    return result.run_dir


def test_the_planted_word_ranks_first_and_the_scores_add_up(planted_run):
    predictor = transferlm.load(planted_run)
    text = "the film was quite superb and the story"
    [result] = predictor.explain([text])
    [explained] = result["explanations"]
    assert explained["target"] == "pos"
    words = explained["words"]
    assert [w["word"] for w in words] == text.split()
    assert max(words, key=lambda w: w["score"])["word"] == PLANTED
    # completeness: the words' scores add up to output - baseline output, within the reported delta
    total = sum(w["score"] for w in words)
    assert total == pytest.approx(explained["output"] - explained["baseline_output"], abs=explained["delta"] + 1e-4)
    assert explained["delta"] < 0.05 * abs(explained["output"] - explained["baseline_output"]) + 1e-3


def test_a_long_input_is_explained_per_window_and_merged(planted_run):
    predictor = transferlm.load(planted_run)
    text = " ".join(["the film was quite and the story"] * 6 + [PLANTED])  # 43 words: windows of 32 tokens
    [result] = predictor.explain([text], ExplainSettings(steps=64))
    [explained] = result["explanations"]
    assert explained["windows"] > 1 and len(explained["words"]) == 43
    total = sum(w["score"] for w in explained["words"])
    assert total == pytest.approx(explained["output"] - explained["baseline_output"], abs=explained["delta"] + 1e-4)
    [prediction] = predictor.predict([text])
    # the explained output is the document's own logit: its softmax is the prediction's probability
    assert prediction["label"] == explained["target"]


def test_subwords_map_to_their_words(minilm_tokenizer_module):
    from transferlm.config.schema import DataConfig
    from transferlm.data.records import Record
    from transferlm.tasks.classification import ClassificationSettings, ClassificationTask

    task = ClassificationTask(ClassificationSettings(), DataConfig(train="x"))
    inputs = task.explanation_inputs(minilm_tokenizer_module, Record("unbelievably good", None, None, 1), 64)
    assert [(w.text, w.start, w.end) for w in inputs.words] == [("unbelievably", 0, 12), ("good", 13, 17)]
    [word_of] = inputs.word_of
    assert word_of[0] is None and word_of[-1] is None  # [CLS] and [SEP]
    assert word_of[1:-1].count(0) > 1 and word_of[1:-1].count(1) == 1  # several subwords, one word


@pytest.fixture(scope="module")
def minilm_tokenizer_module():
    from transferlm.models.load import load_tokenizer
    from transferlm.models.resolve import resolve_model

    return load_tokenizer(resolve_model("minilm").path)


def test_each_predicted_entity_is_explained_by_its_words(tiny_model_dir, tmp_path):
    from conftest import ner_rows

    files = {"train": write_jsonl(tmp_path / "train.jsonl", ner_rows(40, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", ner_rows(12, 2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=6, lr=5e-3)
    config["task"] = {"type": "ner"}
    predictor = transferlm.load(transferlm.train(config).run_dir)
    tokens = ner_rows(1, 7)[0]["tokens"]
    [prediction] = predictor.predict([tokens])
    [result] = predictor.explain([tokens], ExplainSettings(steps=32))
    names = [e["target"] for e in result["explanations"]]
    assert names == [f"{e['label']}: {e['text']}" for e in prediction["entities"]]
    for explained in result["explanations"]:
        assert [w["word"] for w in explained["words"]] == tokens
        total = sum(w["score"] for w in explained["words"])
        assert total == pytest.approx(explained["output"] - explained["baseline_output"],
                                      abs=explained["delta"] + 1e-4)


def test_cli_writes_jsonl_and_a_shaded_page_and_refuses_an_unknown_label(planted_run, tmp_path, capsys):
    inputs = tmp_path / "texts.txt"
    inputs.write_text("the film was superb\nthe story was quite\n")
    code = main(["explain", str(planted_run), "--input", str(inputs), "--output", str(tmp_path / "x.jsonl"),
                 "--html", str(tmp_path / "x.html"), "--steps", "20"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and rows[0]["explanations"][0]["words"][3]["word"] == PLANTED
    page = (tmp_path / "x.html").read_text()
    assert "rgba(46,160,67," in page and PLANTED in page
    with pytest.raises(ConfigError, match="the model has no label 'great'; its labels are"):
        transferlm.load(planted_run).explain(["the film"], ExplainSettings(target="great"))


def test_a_qa_answer_is_explained_by_its_start_and_end(tiny_model_dir, tmp_path):
    from conftest import qa_rows

    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(40, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(12, 2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=2)
    config["task"] = {"type": "qa"}
    predictor = transferlm.load(transferlm.train(config).run_dir)
    question, context = "which price", "the bank was great and the stock market fell"
    [prediction] = predictor.predict([(question, context)])
    [result] = predictor.explain([(question, context)], ExplainSettings(steps=32))
    start, end = result["explanations"]
    assert prediction["answer"] in start["target"]
    assert start["target"].startswith("start of the answer") and end["target"].startswith("end of the answer")
    assert [w["word"] for w in start["words"]] == question.split() + context.split()
    assert {w["side"] for w in start["words"]} == {0, 1}
    for explained in (start, end):
        total = sum(w["score"] for w in explained["words"])
        assert total == pytest.approx(explained["output"] - explained["baseline_output"],
                                      abs=explained["delta"] + 1e-4)


@pytest.mark.parametrize("strategy", [{"name": "full"}, {"name": "lora", "r": 2}])
def test_a_decoder_classifier_is_explained_as_an_encoder_is(tiny_gpt2_dir, tmp_path, strategy):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", planted_rows(24, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", planted_rows(8, 2))}
    config = tiny_config(tiny_gpt2_dir, files, tmp_path / "run", max_steps=4)
    config["strategy"] = strategy
    predictor = transferlm.load(transferlm.train(config).run_dir)
    text = "the film was quite superb"
    [result] = predictor.explain([text], ExplainSettings(steps=32))
    [explained] = result["explanations"]
    assert explained["target"] == predictor.predict([text])[0]["label"]
    assert [w["word"] for w in explained["words"]] == text.split()
    total = sum(w["score"] for w in explained["words"])
    assert total == pytest.approx(explained["output"] - explained["baseline_output"], abs=explained["delta"] + 1e-4)
