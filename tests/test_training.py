"""The training loop on a tiny random BERT: learning, saving, resuming, accumulation, strategies."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import transferlm
from conftest import interrupted_after, tiny_config, write_jsonl
from transferlm.errors import ConfigError, DataError, RunDirError
from transferlm.runs import layout
from transferlm.training.loop import TrainingLoop


def losses(run_dir):
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["event"] == "train"]


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        if atol and name.endswith("attention.self.key.bias"):
            # Softmax ignores a shift added to every key, so this gradient is exactly zero in exact
            # arithmetic: only float noise, which Adam normalises into lr-sized steps. Nothing to compare.
            continue
        assert torch.allclose(a[name], b[name], atol=atol, rtol=0), name


def test_loss_falls_and_the_model_learns(tiny_model_dir, sentiment_files, tmp_path):
    result = transferlm.train(tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=10, log_every=1))
    curve = losses(result.run_dir)
    assert sum(curve[-3:]) / 3 < 0.5 * sum(curve[:3]) / 3
    assert result.summary.validation["accuracy"] >= 0.9


def test_run_directory_is_complete_and_reloads_to_identical_logits(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run")
    config["task"] = {"class_weights": "auto"}
    result = transferlm.train(config)
    root = result.run_dir
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        layout.CONFIG,
        layout.TASK_STATE,
        layout.METRICS,
        layout.VERSIONS,
        layout.MANIFEST,
        "log.jsonl",
        "validation_confusion.txt",
        "validation_confusion.png",
    ):
        assert (root / name).is_file(), name
    assert not (root / "checkpoints").exists()

    predictor = transferlm.load(root)
    texts = ["the film was great", "a boring plot"]
    predictions = predictor.predict(texts)
    assert {p["label"] for p in predictions} <= {"pos", "neg"}
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predictions)

    # Plain transformers loads the same directory and gives the same logits.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(root).eval()
    tokenizer = AutoTokenizer.from_pretrained(root)
    with torch.no_grad():
        plain = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    ours = torch.tensor([[p["probabilities"][model.config.id2label[i]] for i in range(2)] for p in predictions])
    # predictions are at the temperature fitted on validation (task.temperature_scaling), saved with the run
    temperature = json.loads((root / "labels.json").read_text())["temperature"]
    assert torch.allclose(torch.softmax(plain / temperature, -1), ours, atol=1e-5)
    assert model.config.id2label == {0: "neg", 1: "pos"}


def test_loaded_model_scores_like_the_trained_one(tiny_model_dir, sentiment_files, tmp_path):
    result = transferlm.train(tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run"))
    metrics = transferlm.load(result.run_dir).evaluate(sentiment_files["dev"])
    assert metrics["accuracy"] == result.summary.validation["accuracy"]
    assert metrics["confusion_matrix"] == result.summary.validation["confusion_matrix"]


def test_interrupted_run_resumes_to_the_same_weights(tiny_model_dir, sentiment_files, tmp_path):
    settings = dict(epochs=3, checkpoint_every=2, eval_every=3)
    whole = transferlm.train(tiny_config(tiny_model_dir, sentiment_files, tmp_path / "whole", **settings))

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "split", **settings)
    with pytest.raises(KeyboardInterrupt), interrupted_after(4):
        transferlm.train(config)
    with pytest.raises(RunDirError, match="resume it with"):
        transferlm.load(tmp_path / "split")
    with pytest.raises(ConfigError, match="train.batch_size: differs from the interrupted run"):
        transferlm.train({**config, "train": {**config["train"], "batch_size": 4}})
    train_file = sentiment_files["train"]
    original = train_file.read_bytes()
    train_file.write_bytes(original + b"one more line,pos\n")
    with pytest.raises(ConfigError, match="changed since the interrupted run"):
        transferlm.train(config)
    train_file.write_bytes(original)  # the same contents again (a new time, as experiments rewrite their splits)

    resumed = transferlm.train(config)  # the same call again continues it (as --resume would)
    assert resumed.summary.steps == whole.summary.steps
    assert_same_weights(weights(whole.run_dir), weights(resumed.run_dir))


def test_gradient_accumulation_matches_the_larger_batch(tiny_model_no_dropout, sentiment_files, tmp_path):
    # 37 examples: batch 8 -> 5 steps; 4 x 2 accumulation -> the same 5 steps, the last one uneven (4 + 1),
    # which is where averaging per micro-batch instead of per example goes wrong.
    rows = sentiment_files["train"].read_text().splitlines()[:38]
    sentiment_files["train"].write_text("\n".join(rows) + "\n")
    common = dict(epochs=1, eval_every=100, group_by_length=False, max_grad_norm=None)
    big = transferlm.train(
        tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "big", batch_size=8, **common)
    )
    acc = transferlm.train(
        tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "acc", batch_size=4, grad_accum=2, **common)
    )
    assert big.summary.steps == acc.summary.steps == 5
    assert_same_weights(weights(big.run_dir), weights(acc.run_dir), atol=1e-6)


def test_frozen_strategy_trains_only_the_head(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1)
    config["strategy"] = {"name": "frozen"}
    result = transferlm.train(config)
    metrics = json.loads((result.run_dir / layout.METRICS).read_text())
    head = 32 * 32 + 32 + 32 * 2 + 2  # pooler dense + classifier
    assert metrics["parameters"]["trainable"] == head
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = weights(result.run_dir)
    for name, tensor in before.items():
        assert torch.equal(after[f"bert.{name}"], tensor) != ("pooler" in name), name


def test_multilabel_training_reports_multilabel_metrics(tiny_model_dir, tmp_path):
    rows = [
        {"text": "the team scored a goal", "label": ["sport"]},
        {"text": "the stock market price", "label": ["money"]},
        {"text": "the team stock price and goal", "label": ["money", "sport"]},
    ] * 8
    files = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "dev": write_jsonl(tmp_path / "d.jsonl", rows[:6])}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=6)
    config["task"] = {"multi_label": True}
    result = transferlm.train(config)
    assert {"f1_micro", "f1_macro", "subset_accuracy"} <= result.summary.validation.keys()
    predictions = transferlm.load(result.run_dir).predict(["the team scored a goal"])
    assert set(predictions[0]) == {"labels", "probabilities"}


def test_early_stopping_stops_and_keeps_the_best(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(
        tiny_model_dir, sentiment_files, tmp_path / "run", epochs=30, eval_every=1, early_stopping_patience=2, lr=5e-2
    )
    result = transferlm.train(config)
    assert result.summary.stopped_early and result.summary.steps < 30 * 5
    assert result.summary.validation["accuracy"] == result.summary.best_metric


def test_existing_finished_run_is_not_overwritten_silently(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1)
    transferlm.train(config)
    with pytest.raises(RunDirError, match="already holds a finished run.*--overwrite"):
        transferlm.train(config)
    assert transferlm.train(config, overwrite=True).run_dir.is_dir()


def test_sentence_pairs_train_and_predict_from_tuples(tiny_model_dir, tmp_path):
    rows = [
        {"premise": "the film was great", "hypothesis": "good", "label": "agree"},
        {"premise": "the film was awful", "hypothesis": "good", "label": "disagree"},
        {"premise": "the plot was dull", "hypothesis": "bad", "label": "agree"},
        {"premise": "the plot was superb", "hypothesis": "bad", "label": "disagree"},
    ] * 4
    files = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "dev": write_jsonl(tmp_path / "d.jsonl", rows[:4])}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=1)
    config["data"].update(text_column="premise", text_pair_column="hypothesis")
    result = transferlm.train(config)
    predictor = transferlm.load(result.run_dir)
    assert predictor.predict([("the film was great", "good")])[0]["label"] in {"agree", "disagree"}
    with pytest.raises(DataError, match="trained on text pairs"):
        predictor.predict(["a single text"])


def test_bf16_autocast_trains_on_cpu(tiny_model_dir, sentiment_files, tmp_path):
    result = transferlm.train(
        tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=10, bf16=True, log_every=1)
    )
    curve = losses(result.run_dir)
    assert all(math.isfinite(x) for x in curve) and sum(curve[-3:]) < sum(curve[:3])
    assert weights(result.run_dir)["classifier.weight"].dtype == torch.float32  # autocast keeps fp32 weights


def test_mean_pooling_saves_and_reloads_to_identical_predictions(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=10)
    config["task"] = {"pooling": "mean"}
    result = transferlm.train(config)
    assert result.summary.validation["accuracy"] >= 0.9
    texts = ["the film was great", "a boring plot", "quite dull music"]
    first = transferlm.load(result.run_dir).predict(texts)
    second = transferlm.load(result.run_dir).predict(texts)
    assert first == second
    metrics = transferlm.load(result.run_dir).evaluate(sentiment_files["dev"])
    assert metrics["accuracy"] == result.summary.validation["accuracy"]
    # The fine-tuned encoder itself loads with plain transformers.
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(result.run_dir)
    assert torch.equal(
        encoder.embeddings.word_embeddings.weight, weights(result.run_dir)["embeddings.word_embeddings.weight"]
    )


def test_loading_a_mean_pooling_run_reports_no_missing_weights(tiny_model_dir, sentiment_files, tmp_path):
    # The run holds no pooler (mean pooling never reads it); loading must not build one and then report its
    # weights as missing and "newly initialized" to a user of the Python API.
    import logging

    from transformers.utils import logging as hf_logging

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1)
    config["task"] = {"pooling": "mean"}
    result = transferlm.train(config)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    logging.getLogger("transformers").addHandler(handler)
    try:
        predictor = transferlm.load(result.run_dir)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
        hf_logging.set_verbosity(verbosity)
    reported = "\n".join(r.getMessage() for r in records)
    assert "MISSING" not in reported and "newly initialized" not in reported, reported
    assert predictor.model.backbone.pooler is None


def test_frozen_mean_pooling_trains_the_classifier_only_with_the_backbone_in_eval_mode(
    tiny_model_dir, sentiment_files, tmp_path, monkeypatch
):
    seen_modes = []
    original = TrainingLoop._step

    def record_mode(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        seen_modes.append((self.unwrapped.backbone.training, self.unwrapped.classifier.training))
        return result

    monkeypatch.setattr(TrainingLoop, "_step", record_mode)
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1)
    config["task"] = {"pooling": "mean"}
    config["strategy"] = {"name": "frozen", "cache_features": False}
    result = transferlm.train(config)
    metrics = json.loads((result.run_dir / layout.METRICS).read_text())
    assert metrics["parameters"]["trainable"] == 32 * 2 + 2
    assert set(seen_modes) == {(False, True)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is about CPUs")
@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_bfloat16_warns(tiny_model_dir, sentiment_files, tmp_path, monkeypatch, caplog,
                                                      native):
    from transferlm.runs import train as train_module

    monkeypatch.setattr(train_module, "_native_cpu_bf16", lambda: native)
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", max_steps=1)
    config["train"]["bf16"] = True
    with caplog.at_level("WARNING"):
        transferlm.train(config)
    warned = any("without native bfloat16" in r.message for r in caplog.records)
    assert warned is not native


def test_a_kill_between_the_two_renames_of_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    from transferlm.training import checkpoint

    target = tmp_path / "checkpoints" / "last"
    with checkpoint.atomic_dir(target) as tmp:
        (tmp / "state.json").write_text("step 1")

    def killed(src, dst):  # the process dies after the first rename: `last` is gone, `.last.old` holds step 1
        if Path(dst).name == ".last.old":
            real_replace(src, dst)
        raise KeyboardInterrupt

    real_replace = os.replace
    monkeypatch.setattr(checkpoint.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt), checkpoint.atomic_dir(target) as tmp:
        (tmp / "state.json").write_text("step 2")
    monkeypatch.undo()
    assert not target.exists() and (tmp_path / "checkpoints" / ".last.old").is_dir()
    checkpoint.restore_replaced(tmp_path / "checkpoints")
    assert (target / "state.json").read_text() == "step 1"
    assert not any(p.name.startswith(".last.") for p in (tmp_path / "checkpoints").iterdir())
