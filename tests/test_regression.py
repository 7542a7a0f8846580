"""The regression task (a number per text or pair) and its no-transfer baselines, mean and ridge."""

from __future__ import annotations

import math
import random

import pytest
import torch

from conftest import FILLER, POSITIVE, write_jsonl
from transferlm.baselines.regression import run_mean, run_ridge
from transferlm.config.schema import DataConfig
from transferlm.data.records import Record, read_records
from transferlm.errors import ConfigError
from transferlm.evaluation.regression import regression_metrics
from transferlm.tasks.regression import RegressionSettings, RegressionTask


def make_task(pair: bool = False, **settings) -> RegressionTask:
    data = DataConfig(train="unused", text_pair_column="text_pair" if pair else None)
    return RegressionTask(RegressionSettings(**settings), data)


def scored_rows(n: int, seed: int) -> list[dict]:
    """Texts whose score is the number of positive words in them (0 to 3), among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 3)
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE, k)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": float(k)})
    return rows


def records(rows: list[dict]) -> list[Record]:
    return [Record(r["text"], None, r["label"], i + 1) for i, r in enumerate(rows)]


def fit(task, model, features, pad_id: int, epochs: int, lr: float = 3e-3, batch_size: int = 16) -> list[float]:
    """Train ``model`` on ``features`` with AdamW; the loss of each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(epochs):
        for start in range(0, len(features), batch_size):
            batch = task.collate(features.items[start : start + batch_size], pad_id)
            terms = task.loss(model(**task.model_inputs(batch)), batch)
            (terms.total / terms.count).backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(terms.total.detach()) / terms.count)
    return losses


def test_metrics_match_hand_computed_values():
    got = regression_metrics([1, 2, 3, 4], [1, 3, 2, 4])
    # errors 0, -1, 1, 0; centred values -1.5, -0.5, 0.5, 1.5 against -1.5, 0.5, -0.5, 1.5: r = 4 / 5
    assert got == pytest.approx({"rmse": math.sqrt(0.5), "mae": 0.5, "pearson": 0.8, "spearman": 0.8, "n": 4})
    # tied predictions share the average rank 1.5: ranks (1.5, 1.5, 3) against (1, 2, 3) give 1.5 / sqrt(1.5 * 2)
    ties = regression_metrics([1, 1, 2], [1, 2, 3])
    assert ties["spearman"] == pytest.approx(1.5 / math.sqrt(3.0))
    assert ties["pearson"] == pytest.approx(1.5 / math.sqrt(3.0))  # the same values up to a shift
    # Spearman sees only the order: a monotone but curved prediction is perfect for it, not for Pearson
    curved = regression_metrics([1, 4, 9, 100], [1, 2, 3, 4])
    assert curved["spearman"] == pytest.approx(1.0) and curved["pearson"] < 0.9
    constant = regression_metrics([2.0, 2.0, 2.0], [1, 2, 3])
    assert constant["pearson"] == 0.0 and constant["spearman"] == 0.0 and constant["rmse"] == pytest.approx(
        math.sqrt(2 / 3))


def test_direction_of_each_metric():
    task = make_task()
    assert task.default_metric == "spearman"
    assert [task.greater_is_better(m) for m in ("spearman", "pearson", "rmse", "mae")] == [True, True, False, False]
    with pytest.raises(ConfigError, match="'r2' is not a metric of task regression; choose one of mae, pearson"):
        task.greater_is_better("r2")


def test_labels_must_be_finite_numbers_and_problems_name_file_and_lines(tmp_path):
    path = write_jsonl(tmp_path / "scores.jsonl", [{"text": "a", "label": "3.8"}, {"text": "b", "label": "high"},
                                                   {"text": "c", "label": 2}, {"text": "d", "label": "nan"}])
    found, problems = read_records(path, DataConfig(train=str(path)))
    assert problems == []
    task = make_task()
    problems = task.fit_labels(found, {})
    assert problems == ["train: 2 row(s) have a label in column 'label' that is not a finite number (lines 2, 4); "
                        "regression targets are numbers such as 3.8; fix those rows or check data.label_column"]
    problems = task.check_labels({str(path): found})
    assert problems and problems[0].startswith(f"{path}: 2 row(s)")
    assert task.fit_labels(records([{"text": "a", "label": "1"}, {"text": "b", "label": "1.0"}]), {}) == [
        "train: every training target is 1; regression needs targets that vary — check data.label_column ('label')"]


def test_normalisation_round_trip_through_the_saved_state():
    train = records([{"text": "a", "label": "1"}, {"text": "b", "label": "2"}, {"text": "c", "label": " 6 "}])
    task = make_task()
    assert task.fit_labels(train, {}) == []
    assert (task.mean, task.std) == pytest.approx((3.0, math.sqrt(14 / 3)))
    raw = task.targets(train)
    z = task.standardised(raw)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6) and float(z.std(unbiased=False)) == pytest.approx(1.0)
    restored = make_task(normalize=False)  # the saved state wins over the settings
    restored.load_state(task.state())
    assert restored.normalize and torch.allclose(restored.values(z.unsqueeze(1)), raw)
    plain = make_task(normalize=False)
    plain.fit_labels(train, {})
    assert torch.equal(plain.standardised(raw), raw) and torch.equal(plain.values(raw), raw)


def test_loss_is_on_the_standardised_scale_mse_or_huber():
    task = make_task()
    task.mean, task.std = 2.0, 2.0
    batch = {"labels": torch.tensor([0.0, 2.0, 8.0])}  # standardised: -1, 0, 3
    outputs = type("Out", (), {"logits": torch.zeros(3, 1)})()
    mse = task.loss(outputs, batch)
    assert mse.count == 3 and float(mse.total) == pytest.approx(1 + 0 + 9)
    huber = make_task(loss="huber", huber_delta=1.0)
    huber.mean, huber.std = 2.0, 2.0
    # 0.5 * 1^2 for |-1| <= delta; delta * (3 - 0.5 * delta) for 3
    assert float(huber.loss(outputs, batch).total) == pytest.approx(0.5 + 0 + 2.5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_tiny_model_trains_predicts_scores_and_reloads(tmp_path, tiny_model_no_dropout, pooling):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_no_dropout)
    task = make_task(pooling=pooling)
    train = records(scored_rows(48, seed=1))
    assert task.fit_labels(train, {}) == []
    model = task.build_model(tiny_model_no_dropout, tokenizer)
    features = task.encode(tokenizer, train, max_length=32)
    losses = fit(task, model, features, tokenizer.pad_token_id, epochs=12)  # the cls head starts slower
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses

    model.eval()
    test = records(scored_rows(24, seed=2))
    test_features = task.encode(tokenizer, test, max_length=32)
    with torch.no_grad():
        batch = task.collate(test_features.items, tokenizer.pad_token_id)
        outputs = task.output_rows(task.logits(model(**task.model_inputs(batch))), test_features.items)
    metrics = task.metrics(outputs, test_features)
    assert metrics["n"] == 24 and metrics["spearman"] > 0.5, metrics
    unlabelled = task.encode(tokenizer, test, max_length=32, with_labels=False)
    predicted = task.predictions(outputs, unlabelled, test)
    assert len(predicted) == 24 and set(predicted[0]) == {"score"} and isinstance(predicted[0]["score"], float)
    assert -1.0 < sum(p["score"] for p in predicted) / 24 < 4.0  # on the target scale (0 to 3), not standardised

    task.save_model(model, tmp_path / "model")
    reloaded = task.load_model(tmp_path / "model").eval()
    with torch.no_grad():
        again = task.logits(reloaded(**task.model_inputs(batch)))
    assert torch.allclose(torch.stack(outputs), again, atol=1e-5)
    if pooling == "mean":
        assert task.feature_head(model) is not None
    assert task.head_parameter_names(model) and all(
        "classifier" in n or "pooler" in n for n in task.head_parameter_names(model))


def test_pairs_are_encoded_together(tiny_model_no_dropout):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_no_dropout)
    task = make_task(pair=True)
    pair = Record("a film", "the story", "2.5", 1)
    assert task.input_record(("a film", "the story"), 0) == Record("a film", "the story", None, 0)
    assert task.record_row(pair) == {"text": "a film", "text_pair": "the story", "label": "2.5"}
    item = task.encode(tokenizer, [pair], max_length=32).items[0]
    assert tokenizer.convert_ids_to_tokens(item["input_ids"]) == ["[CLS]", "a", "film", "[SEP]", "the", "story",
                                                                  "[SEP]"]
    assert item["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1] and item["labels"] == 2.5


def test_ridge_beats_the_mean_where_words_predict_the_score():
    task = make_task()
    train, validation, test = (records(scored_rows(n, seed)) for n, seed in ((200, 1), (60, 2), (60, 3)))
    task.fit_labels(train, {})
    evaluate = {"validation": validation, "test": test}
    mean = run_mean(task, train, evaluate, seed=0)
    ridge = run_ridge(task, train, evaluate, seed=0)
    train_mean = sum(r.label for r in train) / len(train)
    assert mean.chosen == {"mean": pytest.approx(train_mean)} and mean.metrics["test"]["spearman"] == 0.0
    expected_rmse = math.sqrt(sum((r.label - train_mean) ** 2 for r in test) / len(test))
    assert mean.metrics["test"]["rmse"] == pytest.approx(expected_rmse)
    assert ridge.chosen["alpha"] in (0.3, 1.0, 3.0, 10.0)
    assert ridge.metrics["test"]["spearman"] > 0.8 and ridge.metrics["test"]["rmse"] < 0.6 * expected_rmse
    assert ridge.metrics["test"]["per_example"] is None and set(ridge.metrics) == {"validation", "test"}


@pytest.mark.slow
def test_compare_and_curve_run_regression_with_its_baselines(tmp_path, tiny_model_dir):
    from conftest import tiny_config
    from transferlm.config import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings, CurveSettings
    from transferlm.experiments.curve import curve

    files = {"train": write_jsonl(tmp_path / "train.jsonl", scored_rows(40, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", scored_rows(16, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=1, batch_size=8)
    config["task"] = {"type": "regression"}
    report = compare(build_config(config), CompareSettings(members=["full", "mean", "ridge"], seeds=[0]))
    rows = {m["title"]: m for m in report["members"]}
    assert set(rows) == {"full", "mean", "ridge"} and report["metric"] == "spearman"
    assert report["best_baseline"] == "ridge"  # the mean predicts one number: no correlation at all
    config["output"] = str(tmp_path / "curve")
    curved = curve(build_config(config), CurveSettings(members=["ridge"], seeds=[0], sizes=[8, "all"]))
    assert [p["n_train"] for p in curved["curves"]["ridge"]] == [8, 40]  # sizes count examples, not classes


def similar_pairs(n: int, seed: int) -> list[Record]:
    """Pairs whose score is how many of 4 words the two texts share (0 to 4)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shared = rng.randint(0, 4)
        first = rng.sample(FILLER + POSITIVE, 8)
        second = first[:shared] + [w for w in FILLER + POSITIVE if w not in first][: 4 - shared]
        out.append(Record(" ".join(first[:4]), " ".join(second), float(shared), i + 1))
    return out


def test_cosine_reads_the_pretrained_model_as_it_is_on_pairs_only(tiny_model_dir):
    from transferlm.baselines import BASELINES, PRETRAINED
    from transferlm.baselines.embedding import run_cosine

    assert make_task().baselines == ("mean", "ridge")
    assert make_task(pair=True).baselines == ("mean", "ridge", "cosine") and "cosine" in PRETRAINED
    assert BASELINES.get("cosine") is run_cosine
    task = make_task(pair=True)
    train, validation, test = similar_pairs(60, 1), similar_pairs(30, 2), similar_pairs(30, 3)
    task.fit_labels(train, {})
    result = run_cosine(task, train, {"validation": validation, "test": test}, seed=0, model=str(tiny_model_dir))
    # identical texts embed identically (cosine 1) and share most: even an untrained tiny model orders the pairs
    assert result.chosen["slope"] > 0 and result.chosen["fitted_on"] == 60 and result.parameters == 2
    assert result.metrics["test"]["spearman"] > 0.5, result.metrics["test"]
    assert set(result.metrics) == {"validation", "test"}
    with pytest.raises(ConfigError, match="the cosine baseline compares two texts; test has examples without"):
        run_cosine(task, train, {"test": records(scored_rows(3, 4))}, seed=0, model=str(tiny_model_dir))
    with pytest.raises(ConfigError, match="give model.name"):
        run_cosine(task, train, {"test": test}, seed=0)


def test_compare_runs_cosine_with_the_experiments_model_and_judges_against_it(tmp_path, tiny_model_dir):
    from conftest import tiny_config
    from transferlm.config import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    def rows(pairs):
        return [{"text": p.text, "text_pair": p.text_pair, "label": p.label} for p in pairs]

    files = {"train": write_jsonl(tmp_path / "train.jsonl", rows(similar_pairs(40, 1))),
             "dev": write_jsonl(tmp_path / "dev.jsonl", rows(similar_pairs(20, 2)))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "exp")
    config["task"] = {"type": "regression"}
    config["data"]["text_pair_column"] = "text_pair"
    report = compare(build_config(config), CompareSettings(members=["ridge", "cosine"], seeds=[0]))
    cosine = next(m for m in report["members"] if m["title"] == "cosine")
    assert cosine["kind"] == "baseline" and not cosine["failed"], cosine["failed"]
    assert cosine["runs"][0]["chosen"]["model"] == str(tiny_model_dir)  # the experiment's own model was read
    assert report["best_baseline"] in ("ridge", "cosine") and cosine["summary"]["mean"] > 0.5
