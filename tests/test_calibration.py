"""Calibration metrics and temperature scaling (issue 22's first part)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import transferlm
from conftest import sentiment_rows, tiny_config, write_jsonl
from transferlm.evaluation.calibration import (
    brier_score,
    classwise_ece,
    expected_calibration_error,
    fit_temperature,
)


def test_ece_and_brier_match_hand_computed_values():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    targets = np.array([0, 1, 1, 1])
    # confidences 0.9, 0.8, 0.7, 0.6 each alone in a bin (15 bins); correct 1, 0, 1, 1
    # |1-0.9| + |0-0.8| + |1-0.7| + |1-0.6| = 0.1 + 0.8 + 0.3 + 0.4 = 1.6, over 4 examples
    assert expected_calibration_error(probs, targets) == pytest.approx(0.4)
    # with 1 bin: |accuracy 0.75 - mean confidence 0.75| = 0
    assert expected_calibration_error(probs, targets, bins=1) == pytest.approx(0.0)
    # squared distance to one-hot: 0.02, 1.28, 0.18, 0.32
    assert brier_score(probs, targets) == pytest.approx((0.02 + 1.28 + 0.18 + 0.32) / 4)
    assert classwise_ece(np.eye(2)[targets], targets) == 0.0  # one-hot truth: perfectly calibrated


def overconfident(n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a model that is right 80 % of the time but says so with far more confidence."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 3, (n,), generator=g)
    right = torch.rand(n, generator=g) < 0.8
    predicted = torch.where(right, targets, (targets + 1) % 3)
    logits = torch.randn(n, 3, generator=g)
    logits[torch.arange(n), predicted] += 8.0  # near-certain every time
    return logits, targets


def test_temperature_scaling_lowers_ece_and_keeps_accuracy():
    logits, targets = overconfident()
    before = torch.softmax(logits, -1).numpy()
    temperature = fit_temperature(logits, targets)
    after = torch.softmax(logits / temperature, -1).numpy()
    assert temperature > 1.5  # over-confident: the logits are softened
    assert expected_calibration_error(after, targets.numpy()) < 0.25 * expected_calibration_error(
        before, targets.numpy())
    assert (after.argmax(1) == before.argmax(1)).all()
    # a model that is already calibrated keeps a temperature near 1
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(20000, 3, generator=g) * 2
    targets = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(1)
    assert fit_temperature(logits, targets) == pytest.approx(1.0, abs=0.05)


def test_a_trained_run_saves_its_temperature_and_predicts_with_it(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2))}
    run = transferlm.train(tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=2)).run_dir
    state = json.loads((run / "labels.json").read_text())  # the task state saved with the run
    metrics = json.loads((run / "metrics.json").read_text())
    calibration = metrics["training"]["calibration"]
    predictor = transferlm.load(run)
    temperature = predictor.task.temperature
    assert temperature == pytest.approx(calibration["temperature"]) and temperature != 1.0
    assert state["temperature"] == pytest.approx(temperature)
    assert "ece" in metrics["validation"] and {"ece_before", "ece_after"} <= set(calibration)
    text = "the film was great"
    [prediction] = predictor.predict([text])
    with torch.no_grad():
        logits = predictor.model(**predictor.tokenizer([text], return_tensors="pt")).logits[0]
    expected = torch.softmax(logits / temperature, -1)
    labels = predictor.task.label_map.labels
    assert [prediction["probabilities"][label] for label in labels] == pytest.approx(expected.tolist(), abs=1e-6)


def test_temperature_scaling_can_be_turned_off(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(24, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(8, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", max_steps=2)
    config["task"] = {"type": "classification", "temperature_scaling": False}
    run = transferlm.train(config).run_dir
    assert transferlm.load(run).task.temperature == 1.0
    assert "calibration" not in json.loads((run / "metrics.json").read_text())["training"]


def test_no_temperature_is_fitted_on_a_validation_set_without_errors():
    from transferlm.config.schema import DataConfig
    from transferlm.data.records import Record
    from transferlm.tasks.base import Features
    from transferlm.tasks.classification import ClassificationSettings, ClassificationTask

    task = ClassificationTask(ClassificationSettings(), DataConfig(train="x"))
    task.fit_labels([Record("a", None, "neg", 1), Record("b", None, "pos", 2)], {})
    rows = [torch.tensor([2.0, -1.0]), torch.tensor([-1.0, 2.0])]
    features = Features([{"labels": 0}, {"labels": 1}], [1, 1])
    assert task.calibrate(rows, features) == {"temperature": 1.0, "skipped": "no validation error to calibrate on"}
    assert task.temperature == 1.0
