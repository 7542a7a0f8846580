"""The contrastive strategy: pairs, the cosine loss, the fitted head, the run it leaves, resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import transferlm
from conftest import interrupted_after, tiny_config, write_jsonl
from transferlm.errors import ConfigError
from transferlm.strategies.contrastive import PairTask, fit_linear_head, pair_features
from transferlm.tasks.base import Features


def contrastive_config(model_dir, files, output, **train):
    config = tiny_config(model_dir, files, output, **train)
    config["task"] = {"pooling": "mean"}
    config["strategy"] = {"name": "contrastive", "pairs_per_example": 4}
    return config


def test_single_label_head_reproduces_the_regression_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    for n_classes in (2, 3):
        x = rng.normal(size=(60, 5))
        y = rng.integers(0, n_classes, size=60)
        weight, bias = fit_linear_head(torch.tensor(x), torch.tensor(y), n_classes, multi_label=False, c=0.5)
        probabilities = torch.softmax(torch.tensor(x, dtype=torch.float) @ weight.T + bias, dim=-1)
        expected = LogisticRegression(C=0.5, max_iter=1000).fit(x, y).predict_proba(x)
        np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5)


def test_multi_label_head_fits_each_label_and_keeps_constant_ones_constant():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4))
    y = np.stack([(x[:, 0] > 0), (x[:, 1] > 0), np.ones(40, dtype=bool)], axis=1).astype(np.float32)
    weight, bias = fit_linear_head(torch.tensor(x), torch.tensor(y), 3, multi_label=True, c=10.0)
    decided = (torch.sigmoid(torch.tensor(x, dtype=torch.float) @ weight.T + bias) >= 0.5).numpy()
    assert (decided[:, :2] == y[:, :2].astype(bool)).mean() > 0.9  # separable labels are learned
    assert torch.equal(weight[2], torch.zeros(4)) and decided[:, 2].all()  # a label on every example: always on


def test_pair_items_hold_indices_not_copies_and_the_loss_is_squared_cosine_error():
    examples = Features([{"input_ids": [1, 5 + i, 2], "labels": i % 2} for i in range(6)], [3] * 6)
    pairs = pair_features(examples, [item["labels"] for item in examples.items], 10, seed=0)
    assert len(pairs) == 10 and all(set(item) == {"pair", "similarity"} for item in pairs.items)

    class Classes:
        multi_label = False

    task = PairTask(Classes(), examples, head_c=1.0)
    batch = task.training_collate(pairs.items[:4], pad_id=0)
    assert batch["input_ids"].shape[0] == 8  # both sides of 4 pairs in one forward pass
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    terms = task.loss(torch.cat([a, b]), {"similarity": torch.tensor([1.0, 1.0])})
    assert terms.count == 2 and terms.total.item() == pytest.approx(1.0)  # cos 1 -> 0 error; cos 0 -> 1


def test_contrastive_run_fits_the_head_on_its_embeddings_and_reloads_identically(
    tiny_model_dir, sentiment_files, tmp_path
):
    result = transferlm.train(contrastive_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=2,
                                                  log_every=1))
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if e["event"] == "train"]
    assert len(losses) == 40 and sum(losses[-5:]) < sum(losses[:5])
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["training"]["contrastive_pairs"] == 4 * 40  # pairs_per_example x training rows
    predictor = transferlm.load(result.run_dir)
    assert predictor.model.normalize
    # The validation figure selected during stage 1 is what the finished model scores.
    assert predictor.evaluate(sentiment_files["dev"])["accuracy"] == result.summary.validation["accuracy"]
    head = load_file(str(result.run_dir / "head.safetensors"))
    original = load_file(str(tiny_model_dir / "model.safetensors"))
    trained = load_file(str(result.run_dir / "model.safetensors"))
    assert not torch.equal(trained["encoder.layer.0.attention.self.query.weight"],
                           original["encoder.layer.0.attention.self.query.weight"])
    assert head["weight"].abs().sum() > 0
    assert len(predictor.predict(["the film was great"])) == 1


def test_interrupted_contrastive_run_resumes_to_the_same_model(tiny_model_dir, sentiment_files, tmp_path):
    settings = dict(epochs=2, checkpoint_every=3, eval_every=5)
    whole = transferlm.train(contrastive_config(tiny_model_dir, sentiment_files, tmp_path / "whole", **settings))
    config = contrastive_config(tiny_model_dir, sentiment_files, tmp_path / "split", **settings)
    with pytest.raises(KeyboardInterrupt), interrupted_after(7):
        transferlm.train(config)
    resumed = transferlm.train(config, resume=True)
    assert resumed.summary.steps == whole.summary.steps
    for name in ("model.safetensors", "head.safetensors"):
        a, b = load_file(str(whole.run_dir / name)), load_file(str(resumed.run_dir / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_training_data_without_a_shared_label_is_refused_before_training(tiny_model_dir, tmp_path):
    rows = [{"text": f"text number {i}", "label": f"class{i}"} for i in range(6)]
    files = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "dev": write_jsonl(tmp_path / "d.jsonl", rows[:2])}
    with pytest.raises(ConfigError, match="a label shared by at least two examples in the training data"):
        transferlm.train(contrastive_config(tiny_model_dir, files, tmp_path / "run"))


def test_contrastive_options_belong_to_contrastive(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run")
    config["strategy"] = {"name": "full", "pairs_per_example": 4}
    with pytest.raises(ConfigError, match="strategy.pairs_per_example: not a setting of strategy full"):
        transferlm.train(config)
