"""`transferlm inspect`: slices with intervals, calibration and confidently wrong examples in one report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferlm
from conftest import sentiment_rows, tiny_config, write_csv, write_jsonl
from transferlm.cli.main import main
from transferlm.errors import DataError
from transferlm.evaluation.slices import interval, length_buckets, slices
from transferlm.experiments.inspect import InspectSettings, inspect_run


def test_slices_recombine_to_the_overall_metric_and_flag_only_a_real_gap():
    scores = [1.0] * 80 + [0.0] * 20 + [1.0] * 10 + [0.0] * 30  # group b: 25 % right, group a: 80 %
    groups = ["a"] * 100 + ["b"] * 40
    found = {s.value: s for s in slices(scores, {"source": groups})}
    overall = sum(scores) / len(scores)
    assert sum(s.n * s.metric for s in found.values()) / len(scores) == pytest.approx(overall)
    assert found["b"].flagged and not found["a"].flagged
    assert found["b"].low < 0.25 < found["b"].high and found["b"].rest == pytest.approx(0.8)
    assert "source = b: accuracy 0.250" in found["b"].sentence("accuracy")
    # the same gap on 4 examples is within the noise
    small = slices([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0], {"g": ["a"] * 6 + ["b"] * 2})
    assert not any(s.flagged for s in small)


def test_wilson_interval_and_length_buckets():
    low, high = interval([1.0] * 8 + [0.0] * 2)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)  # Wilson, n 10
    assert interval([1.0] * 5) [1] == 1.0
    names = length_buckets([10, 20, 30, 40, 50, 60, 70, 80], buckets=4)
    assert names[0] == "10-29 tokens" and names[-1] == "70-80 tokens" and len(set(names)) == 4


@pytest.fixture(scope="module")
def run_and_data(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    files = {"train": write_jsonl(root / "train.jsonl", sentiment_rows(40, seed=1)),
             "dev": write_jsonl(root / "dev.jsonl", sentiment_rows(16, seed=2))}
    run = transferlm.train(tiny_config(tiny_model_dir, files, root / "run", epochs=3)).run_dir
    rows = [{**r, "source": "forum" if i % 3 == 0 else "shop"} for i, r in enumerate(sentiment_rows(30, seed=3))]
    return run, write_csv(root / "test.csv", rows)


def test_the_report_holds_calibration_slices_and_wrong_examples(run_and_data, tmp_path):
    run, data = run_and_data
    report = inspect_run(run, data, tmp_path / "out", InspectSettings(slice_columns=["source"], top=5))
    accuracy = report["metrics"]["accuracy"]
    by = {}
    for s in report["slices"]:
        by.setdefault(s["grouping"], []).append(s)
    assert set(by) == {"label", "length", "source"}
    for grouping in by.values():  # each grouping recombines to the overall accuracy
        assert sum(s["n"] * s["metric"] for s in grouping) / report["n"] == pytest.approx(accuracy)
    calibration = report["calibration"]
    assert calibration["temperature"] == pytest.approx(transferlm.load(run).task.temperature)
    assert set(calibration["as_predicted"]) == {"ece", "classwise_ece", "brier"}
    assert sum(b["n"] for b in report["reliability"]) == report["n"]
    wrong = report["confidently_wrong"]
    assert len(wrong) == min(5, round((1 - accuracy) * report["n"]))
    assert all(w["label"] != w["predicted"] for w in wrong)
    assert [w["probability"] for w in wrong] == sorted((w["probability"] for w in wrong), reverse=True)
    for name in ("inspect.json", "inspect.md", "inspect.html", "reliability.png"):
        assert (tmp_path / "out" / name).is_file()
    assert json.loads((tmp_path / "out" / "inspect.json").read_text())["n"] == 30
    assert "data:image/png;base64," in (tmp_path / "out" / "inspect.html").read_text()


def test_a_missing_slice_column_names_the_columns_there_are(run_and_data, tmp_path, capsys):
    run, data = run_and_data
    with pytest.raises(DataError, match="no column 'region' to slice by; its columns are text, label, source"):
        inspect_run(run, data, tmp_path / "out", InspectSettings(slice_columns=["region"]))
    code = main(["inspect", str(run), "--data", str(data), "--output", str(tmp_path / "cli"), "--slice-column",
                 "source"])
    out = capsys.readouterr().out
    assert code == 0 and "calibration (15 bins): ECE" in out and "inspect.html" in out


def test_planted_label_flips_on_a_separable_set_are_found():
    from cleanlab.filter import find_label_issues

    from transferlm.experiments.label_errors import fold_assignment, probe_probabilities

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    features = rng.normal(size=(300, 8)) + 6 * np.eye(3, 8)[labels]  # three well separated clusters
    flipped = rng.choice(300, size=15, replace=False)
    given = labels.copy()
    given[flipped] = (labels[flipped] + 1 + rng.integers(0, 2, size=15)) % 3
    probs = probe_probabilities(features, given, fold_assignment(given, 5, 0, ["a", "b", "c"], "x"), 3)
    found = set(find_label_issues(given, probs).nonzero()[0].tolist())
    assert len(found & set(flipped.tolist())) >= 14 and len(found - set(flipped.tolist())) <= 2


def test_too_few_examples_per_class_for_the_folds_is_an_error():
    from transferlm.experiments.label_errors import fold_assignment

    with pytest.raises(DataError, match="too few examples per class for 5 folds \\('b' has 3\\)"):
        fold_assignment(np.array([0] * 10 + [1] * 3), 5, 0, ["a", "b"], "train.csv")


@pytest.mark.parametrize("path", ["fast", "fine-tune"])
def test_label_errors_are_written_and_train_can_exclude_them(run_and_data, tmp_path, path, caplog):
    run, data = run_and_data
    settings = InspectSettings(label_errors=True, label_error_folds=2, label_error_path=path)
    report = inspect_run(run, data, tmp_path / "out", settings)
    errors = report["label_errors"]
    written = (tmp_path / "out" / "label_errors.csv").read_text().splitlines()
    assert written[0] == "line,text,label,suggested,score" and len(written) == errors["flagged"] + 1
    assert errors["examples"] == 30 and 0 <= errors["out_of_fold_accuracy"] <= 1
    if path == "fine-tune":
        assert (tmp_path / "out" / "folds" / "fold-1" / "run" / "transferlm.yaml").is_file()
        return
    exclude = write_csv(tmp_path / "exclude.csv", [{"line": 2}, {"line": 3}, {"line": 999}])
    config = tiny_config(run.parent.parent / "unused", {"train": data, "dev": data}, tmp_path / "again", max_steps=1)
    config["model"]["name"] = transferlm.load(run).saved_config["model"]["name"]
    config["data"]["exclude"] = str(exclude)
    with caplog.at_level("INFO", logger="transferlm.runs.prepare"):
        transferlm.train(config)
    assert f"left out 2 training examples listed in {exclude} (1 listed lines are not rows of {data})" in caplog.text


def test_ner_entity_scores_get_their_calibration(tiny_model_dir, tmp_path):
    from conftest import ner_rows

    files = {"train": write_jsonl(tmp_path / "train.jsonl", ner_rows(40, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", ner_rows(12, 2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=6, lr=5e-3)
    config["task"] = {"type": "ner"}
    run = transferlm.train(config).run_dir
    report = inspect_run(run, files["dev"], tmp_path / "out")
    entities = report["entity_calibration"]
    predicted = sum(len(p["entities"]) for p in transferlm.load(run).predict(
        [r["tokens"] for r in ner_rows(12, 2)]))
    assert entities["entities"] == predicted > 0
    assert sum(b["n"] for b in entities["reliability"]) == predicted and 0 <= entities["ece"] <= 1
    assert entities["precision"] == pytest.approx(report["metrics"]["precision"])
