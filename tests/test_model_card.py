"""Model cards (README.md in run and export directories), parsed with huggingface_hub's own model-card parser, and
`transferlm push`'s file selection and offline failure, tested without network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import transferlm
from conftest import ner_rows, sentiment_rows, tiny_config, write_jsonl
from transferlm.cli.main import main
from transferlm.errors import PushError, RunDirError
from transferlm.runs.card import interval
from transferlm.runs.push import push, push_files


@pytest.fixture()
def classification_run(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(12, seed=2)),
             "test": write_jsonl(tmp_path / "test.jsonl", sentiment_rows(20, seed=3))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "sst-tiny")
    config["data"]["test"] = str(files["test"])
    return transferlm.train(config)


def test_a_runs_card_parses_as_a_hub_model_card_with_its_results(classification_run):
    run = classification_run.run_dir
    card = ModelCard.load(run / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transferlm" and data["pipeline_tag"] == "text-classification"
    assert "strategy-full" in data["tags"] and data["datasets"] == ["dev.jsonl", "test.jsonl", "train.jsonl"]
    assert "base_model" not in data  # a local folder has no hub id
    results = {(r.dataset_split, r.metric_type): r for r in card.data.eval_results}
    test_accuracy = results[("test", "accuracy")]
    assert test_accuracy.metric_value == pytest.approx(classification_run.test["accuracy"], abs=1e-6)
    assert test_accuracy.task_type == "text-classification" and test_accuracy.dataset_name == "test.jsonl"
    assert results[("validation", "accuracy")].metric_value == pytest.approx(
        classification_run.summary.validation["accuracy"], abs=1e-6)
    text = card.text
    for section in ("## Recipe", "## Data", "## Results", "## Calibration", "## Limitations", "## How to use"):
        assert section in text
    assert "| train | 40 | 40 |" in text and "train labels: neg 20, pos 20" in text
    # accuracy is a mean of per-example scores, so it gets an interval; the interval holds the value
    metrics = json.loads((run / "metrics.json").read_text())
    band = metrics["intervals"]["test"]["accuracy"]
    assert band["low"] <= classification_run.test["accuracy"] <= band["high"] and band["n"] == 20
    assert list(metrics["intervals"]["test"]) == ["accuracy"]  # the one metric the per-example scores stand for
    assert f"| accuracy | {classification_run.test['accuracy']:.4f} | {band['low']:.4f} to {band['high']:.4f} |" in text
    assert "Trained on 40 examples" in text
    assert str(run.parent) not in text  # file names, never this machine's paths


def test_interval_is_given_only_for_a_mean_of_example_scores():
    band = interval([1.0] * 80 + [0.0] * 20, 0.8)  # Wilson's interval for 80 of 100
    assert band["low"] == pytest.approx(0.7112, abs=1e-4) and band["high"] == pytest.approx(0.8666, abs=1e-4)
    perfect = interval([1.0] * 50, 1.0)
    assert perfect["high"] == pytest.approx(1.0) and perfect["low"] == pytest.approx(0.9287, abs=1e-4)
    graded = interval([0.5, 1.0, 0.0, 0.5], 0.5)  # scores that are not 0/1: mean +- 1.96 standard errors
    assert graded["low"] == pytest.approx(0.5 - 1.96 * (1 / 6) ** 0.5 / 2)
    assert interval([1.0, 0.0, 1.0], 0.5) is None  # e.g. micro F1 is not the mean of per-sentence scores
    assert interval(None, 0.5) is None


def test_an_ner_card_names_entities_and_the_token_classification_pipeline(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", ner_rows(16, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", ner_rows(8, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "ner-run")
    config["task"] = {"type": "ner"}
    run = transferlm.train(config).run_dir
    card = ModelCard.load(run / "README.md")
    assert card.data.pipeline_tag == "token-classification"
    assert "train entities: " in card.text and "ORG" in card.text and "LOC" in card.text
    assert 'pipeline("token-classification"' in card.text


def test_an_export_gets_its_own_card(classification_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from transferlm.exporting.onnx import ExportSettings, export

    export(classification_run.run_dir, tmp_path / "onnx", ExportSettings(quantize="int8"))
    card = ModelCard.load(tmp_path / "onnx" / "README.md")
    assert card.data.library_name == "onnx" and "int8" in card.data.tags
    assert "## ONNX export" in card.text and "ort.InferenceSession" in card.text
    assert card.data.eval_results  # the run's results travel with it


def test_push_selects_the_model_files_and_leaves_logs_and_checkpoints(classification_run):
    run = classification_run.run_dir
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "checkpoints" / "last" / "state.pt").write_bytes(b"x")
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out").write_bytes(b"x")
    (run / ".partial-upload").write_text("x")
    files = push_files(run)
    assert {"README.md", "model.safetensors", "config.json", "labels.json", "metrics.json", "transferlm.yaml",
            "run.json", "tokenizer.json"} <= set(files)
    assert not [f for f in files if f.startswith(("checkpoints/", "tensorboard/", ".")) or f == "log.jsonl"]


def test_push_refuses_an_unfinished_run_and_fails_at_once_offline(classification_run, tmp_path, monkeypatch):
    (tmp_path / "half").mkdir()
    with pytest.raises(RunDirError, match="not a finished transferlm run"):
        push_files(tmp_path / "half")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PushError, match="HF_HUB_OFFLINE is set"):
        push(classification_run.run_dir, "someone/model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the network is unreachable
    with pytest.raises(PushError, match="cannot reach the Hugging Face Hub"):
        push(classification_run.run_dir, "someone/model")


def test_push_and_card_commands(classification_run, capsys, monkeypatch):
    run = classification_run.run_dir
    assert main(["push", str(run), "--repo", "someone/model", "--dry-run"]) == 0
    assert "README.md" in capsys.readouterr().out.splitlines()
    (run / "README.md").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(run), "--repo", "someone/model"]) == 1
    assert "transferlm card RUN" in capsys.readouterr().err
    assert main(["card", str(run)]) == 0
    assert ModelCard.load(run / "README.md").data.pipeline_tag == "text-classification"


def test_a_compare_members_card_carries_the_verdict(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=1)
    result = transferlm.compare(config, members=["frozen", "tfidf"], seeds=[0])
    frozen = next(m for m in result.report["members"] if m["title"] == "frozen")
    run = frozen["runs"][0]["run_dir"]
    card = ModelCard.load(f"{run}/README.md")
    assert "### Against the baselines (`transferlm compare`)" in card.text
    assert frozen["verdict"]["words"] in card.text
    assert json.loads(Path(run, "metrics.json").read_text())["comparison"]["best_baseline"] == "tfidf"
