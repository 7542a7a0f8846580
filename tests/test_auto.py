"""Issue 23: LogME and `rank`, task inference, `auto`'s plan, dry run, report and reproduce line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ner_rows, qa_rows, sentence_encoder, sentiment_rows, write_csv, write_jsonl
from transferlm.cli.main import build_parser, main
from transferlm.cli.train_args import config_from_args
from transferlm.config.flags import command_line
from transferlm.config.load import build_config, config_to_dict
from transferlm.errors import ConfigError, DataError
from transferlm.evaluation.logme import logme
from transferlm.experiments import auto_choices as auto_module
from transferlm.experiments.auto import auto, plan
from transferlm.experiments.auto_choices import Plan, choose_strategy, choose_weights, parse_budget
from transferlm.experiments.config import AutoSettings, RankSettings
from transferlm.experiments.profile import infer_task
from transferlm.experiments.rank import rank


# --- LogME ---
def test_logme_ranks_features_by_how_well_they_separate_the_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    centres = rng.normal(size=(3, 32))
    scores = [logme(rng.normal(size=(600, 32)) + gap * centres[labels], labels) for gap in (0.0, 0.3, 1.0, 3.0)]
    assert scores == sorted(scores) and scores[-1] - scores[0] > 1


def test_logme_ranks_regression_features_by_their_noise():
    rng = np.random.default_rng(1)
    target = rng.normal(size=500)
    scores = [logme(np.c_[target + noise * rng.normal(size=500), rng.normal(size=(500, 8))], target, regression=True)
              for noise in (5.0, 1.0, 0.1)]
    assert scores == sorted(scores)


def test_logme_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one target per row"):
        logme(np.zeros((5, 3)), np.zeros(4))


# --- rank ---
def test_rank_scores_each_candidate_and_lists_a_failed_one_last(tiny_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(60, seed=1))
    config = build_config({"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir), "max_length": 32},
                           "output": str(tmp_path / "rank")})
    ranked = rank(config, RankSettings(models=[str(tiny_model_dir), f"random:{tiny_model_dir}", "no-such-model-x"]))
    assert [r.error is None for r in ranked] == [True, True, False]  # the failed candidate is listed last
    assert all(r.examples == 60 and r.targets == 60 and r.seconds > 0 for r in ranked[:2])
    assert "mean of token states" in ranked[0].features
    report = json.loads((tmp_path / "rank" / "rank.json").read_text())
    assert [r["model"] for r in report["ranking"]] == [r.model for r in ranked]
    assert "| 1 |" in (tmp_path / "rank" / "rank.md").read_text()


def test_rank_fits_the_probe_only_when_asked(tiny_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(60, seed=1))
    base = {"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir), "max_length": 32}}
    models = [str(tiny_model_dir), f"random:{tiny_model_dir}"]
    plain = rank(build_config({**base, "output": str(tmp_path / "plain")}), RankSettings(models=models))
    assert all(r.probe is None and r.probe_metric == "" and r.probe_seconds is None for r in plain)
    table = (tmp_path / "plain" / "rank.md").read_text()
    assert "probe" not in table.splitlines()[2] and "No linear probe was fitted (rank.probe: true" in table
    for settings in (RankSettings(models=models, probe=True), RankSettings(models=models, by="probe")):
        probed = rank(build_config({**base, "output": str(tmp_path / settings.by)}), settings)
        assert all(0 < r.probe_seconds < r.seconds and r.probe_metric == "accuracy" for r in probed)
        assert [r.logme for r in sorted(probed, key=lambda r: r.model)] == [
            r.logme for r in sorted(plain, key=lambda r: r.model)]  # the probe does not change LogME
        assert "| probe (accuracy, 3-fold) |" in (tmp_path / settings.by / "rank.md").read_text()
    assert [r.probe for r in probed] == sorted((r.probe for r in probed), reverse=True)  # ordered by it


def test_rank_takes_logme_at_each_models_best_layer(tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoConfig, AutoModel

    cut = tmp_path / "cut"  # the tiny model's first layer alone: the same embeddings and layer 1
    shutil.copytree(tiny_model_dir, cut, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    short = AutoConfig.from_pretrained(tiny_model_dir)
    short.num_hidden_layers = 1
    AutoModel.from_pretrained(tiny_model_dir, config=short).save_pretrained(cut)
    train = write_csv(tmp_path / "train.csv", sentiment_rows(60, seed=1))
    base = {"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir), "max_length": 32}}
    best = {r.model: r for r in rank(build_config({**base, "output": str(tmp_path / "best")}),
                                     RankSettings(models=[str(tiny_model_dir), str(cut)]))}
    full, first = best[str(tiny_model_dir)], best[str(cut)]
    assert len(full.logme_layers) == 3 and len(first.logme_layers) == 2  # the embeddings, then each layer
    assert full.logme_layers[:2] == first.logme_layers  # the same first layers score the same
    assert full.logme == max(full.logme_layers) >= first.logme  # never below a copy of its own first layers
    assert full.layer == int(np.argmax(full.logme_layers)) and f"LogME at layer {full.layer} of 2" in full.features
    last = rank(build_config({**base, "output": str(tmp_path / "last")}),
                RankSettings(models=[str(tiny_model_dir), str(cut)], layers="last"))
    assert all(r.logme == r.logme_layers[-1] and r.layer == len(r.logme_layers) - 1 for r in last)
    assert "last layer's (rank.layers: last)" in (tmp_path / "last" / "rank.md").read_text()


@pytest.mark.parametrize("task", ["ner", "regression", "qa"])
def test_rank_probes_every_labelled_task(task, tiny_model_dir, tmp_path):
    if task == "ner":
        train, data = write_jsonl(tmp_path / "train.jsonl", ner_rows(20, seed=1)), {}
    elif task == "qa":
        train, data = write_jsonl(tmp_path / "train.jsonl", qa_rows(20, seed=1)), {}
    else:
        rows = [{"text": r["text"], "label": float(i % 7)} for i, r in enumerate(sentiment_rows(30, seed=2))]
        train, data = write_csv(tmp_path / "train.csv", rows), {}
    config = build_config({"task": {"type": task}, "data": {"train": str(train), **data},
                           "model": {"name": str(tiny_model_dir), "max_length": 64}, "output": str(tmp_path / "r")})
    (ranked,) = rank(config, RankSettings(models=[str(tiny_model_dir)], probe=True))
    assert ranked.error is None and np.isfinite(ranked.logme) and np.isfinite(ranked.probe)
    assert ranked.probe_metric == {"regression": "r2", "ner": "balanced_accuracy", "qa": "balanced_accuracy"}[task]
    if task != "regression":
        assert ranked.targets > ranked.examples and "token states" in ranked.features  # one target per token


def test_rank_scores_a_decoder_on_its_last_token(tiny_llama_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(30, seed=1))
    config = build_config({"data": {"train": str(train)}, "model": {"name": str(tiny_llama_dir), "max_length": 32},
                           "output": str(tmp_path / "r")})
    (ranked,) = rank(config, RankSettings(models=[str(tiny_llama_dir)]))
    assert ranked.kind == "decoder" and "last-token state" in ranked.features


def test_rank_cli_splits_models_at_commas(tiny_model_dir, tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(30, seed=1))
    code = main(["rank", "--train", str(train), "--models", f"{tiny_model_dir},random:{tiny_model_dir}",
                 "--max-length", "32", "--output", str(tmp_path / "r")])
    assert code == 0
    assert len(json.loads((tmp_path / "r" / "rank.json").read_text())["ranking"]) == 2
    assert "Model ranking" in capsys.readouterr().out


# --- task inference ---
def test_task_inference_on_each_format(tmp_path):
    write_csv(tmp_path / "cls.csv", sentiment_rows(10, seed=1))
    write_csv(tmp_path / "reg.csv", [{"sentence": "a b c", "score": 0.5 * i} for i in range(10)])
    (tmp_path / "tags.txt").write_text("EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n")
    (tmp_path / "tags.conll").write_text("x O\n")
    (tmp_path / "prose.txt").write_text("A paragraph of plain prose.\n\nAnother one follows here.\n")
    (tmp_path / "squad.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "c", "qas": [{"id": "1", "question": "q", "answers": []}]}]}]}))
    write_jsonl(tmp_path / "ner.jsonl", ner_rows(3, seed=1))
    write_jsonl(tmp_path / "qa.jsonl", qa_rows(3, seed=1))
    write_csv(tmp_path / "text-only.csv", [{"text": "just text"}, {"text": "more text"}])
    expected = {"cls.csv": "classification", "reg.csv": "regression", "tags.txt": "ner", "tags.conll": "ner",
                "prose.txt": "adapt", "squad.json": "qa", "ner.jsonl": "ner", "qa.jsonl": "qa",
                "text-only.csv": "adapt"}
    for name, task in expected.items():
        inferred = infer_task(tmp_path / name, {})
        assert inferred.task == task, (name, inferred)
        assert inferred.evidence
    assert infer_task(tmp_path / "reg.csv", {}).columns == {"text_column": "sentence", "label_column": "score"}
    # no usual label name: the column with the fewest distinct values, not an id-like one
    write_csv(tmp_path / "stars.csv", [{"review": f"text {i}", "stars": 1 + i % 5, "user": f"u{i % 9}"}
                                       for i in range(40)])
    stars = infer_task(tmp_path / "stars.csv", {})
    assert (stars.task, stars.columns["label_column"]) == ("classification", "stars")
    write_csv(tmp_path / "pairs.csv", [{"sentence1": "a b", "sentence2": "c d", "label": i % 2} for i in range(6)])
    assert infer_task(tmp_path / "pairs.csv", {}).columns["text_pair_column"] == "sentence2"
    write_jsonl(tmp_path / "multi.jsonl", [{"text": "a b", "labels": ["x", "y"]}, {"text": "c", "labels": ["x"]}])
    multi = infer_task(tmp_path / "multi.jsonl", {})
    assert (multi.task, multi.task_settings) == ("classification", {"multi_label": True})


def test_task_inference_errors_name_the_fix(tmp_path):
    (tmp_path / "data.xml").write_text("<x/>")
    (tmp_path / "other.json").write_text('{"rows": []}')
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="pass --task"):
        infer_task(tmp_path / "data.xml", {})
    with pytest.raises(ConfigError, match="jsonl"):
        infer_task(tmp_path / "other.json", {})
    with pytest.raises(DataError, match="not readable JSON"):
        infer_task(tmp_path / "broken.json", {})
    with pytest.raises(DataError, match="file not found"):
        infer_task(tmp_path / "missing.csv", {})


# --- the plan ---
def _plan(task: str, **profile) -> Plan:
    return Plan(task, "", {"examples": 100, **profile})


def test_few_labels_per_class_choose_contrastive_and_imbalance_class_weights(tiny_model_dir):
    config = build_config({"data": {"train": "x.csv"}, "output": "o"})
    few = _plan("classification", fewest_per_class=8, imbalance=1.0)
    contrastive = choose_strategy(config, {}, few, tiny_model_dir)
    assert contrastive.strategy.name == "contrastive" and contrastive.task.pooling == "mean"
    many = _plan("classification", fewest_per_class=500, imbalance=5.0)
    assert choose_strategy(config, {}, many, tiny_model_dir).strategy.name == "full"
    weighted = choose_weights(config, {}, many)
    assert weighted.task.class_weights == "auto" and "5 times" in many.choices[-1].why
    kept = _plan("classification", fewest_per_class=8, imbalance=5.0)
    given = {"strategy": {"name": "lora"}, "task": {"class_weights": "none"}}
    assert choose_strategy(config, given, kept, tiny_model_dir) is config
    assert choose_weights(config, given, kept) is config
    assert all(c.given for c in kept.choices)


def test_a_large_decoder_trains_with_lora(tiny_llama_dir, monkeypatch):
    monkeypatch.setattr(auto_module, "_parameters", lambda path: 1_700_000_000)
    config = build_config({"data": {"train": "x.csv"}, "output": "o"})
    chosen = _plan("classification", fewest_per_class=500, imbalance=1.0)
    assert choose_strategy(config, {}, chosen, tiny_llama_dir).strategy.name == "lora"
    assert "1700M-parameter decoder" in chosen.choices[-1].why


def test_time_budgets_parse_and_a_budget_too_small_is_refused(tiny_model_dir, tmp_path):
    assert [parse_budget(t) for t in ("90", "90s", "30m", "1.5h")] == [90, 90, 1800, 5400]
    with pytest.raises(ConfigError, match="90s, 30m or 2h"):
        parse_budget("soon")
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    raw = {"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir)}, "output": str(tmp_path / "a")}
    with pytest.raises(ConfigError, match="too small for any plan.*--time-budget"):
        plan(raw, AutoSettings(time_budget="5s"))


def test_text_only_data_is_sent_to_adapt(tmp_path):
    (tmp_path / "prose.txt").write_text("Some prose.\n\nMore prose.\n")
    with pytest.raises(ConfigError, match="transferlm adapt --train"):
        plan({"data": {"train": str(tmp_path / "prose.txt")}}, AutoSettings())


# --- dry run, the whole job, and the reproduce line ---
def test_dry_run_profiles_and_plans_but_trains_nothing(tiny_model_dir, tmp_path, capsys):
    rows = sentiment_rows(40, seed=1) + [{"text": "a repeated line", "label": "pos"},
                                          {"text": "A repeated line", "label": "neg"}]
    train = write_csv(tmp_path / "train.csv", rows)
    out = tmp_path / "auto"
    code = main(["auto", "--train", str(train), "--model", str(tiny_model_dir), "--dry-run", "--output", str(out)])
    assert code == 0
    report = json.loads((out / "auto-plan.json").read_text())
    assert report["dry_run"] and "result" not in report
    profile = report["plan"]["profile"]
    assert profile["duplicate_texts"] == 1 and profile["conflicting_labels"] == 1
    assert {c["key"] for c in report["plan"]["choices"]} >= {"model.name", "strategy.name", "model.max_length"}
    assert sorted(p.name for p in out.iterdir()) == ["auto-plan.html", "auto-plan.json", "auto-plan.md"]  # no runs
    assert "Nothing was trained" in capsys.readouterr().out


def test_the_plan_for_a_small_qa_set_says_which_rules_chose_its_batch_and_epochs(tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(20, seed=1))
    chosen = plan({"task": {"type": "qa"}, "data": {"train": str(train)}, "model": {"name": str(tiny_model_dir)},
                   "output": str(tmp_path / "a")}, AutoSettings(dry_run=True))
    choices = {c.key: c for c in chosen.choices}
    assert choices["train.batch_size"].value == 8 and "SQuAD" in choices["train.batch_size"].why
    epochs = choices["train.epochs"].why  # 5 epochs, raised to the 300-step floor on 20 questions
    assert "(30 epochs: from bench/README.md (auto): SQuAD" in epochs and "after 5 epochs against 3" in epochs


def test_auto_trains_compares_and_reproduces_the_run(tiny_model_dir, tmp_path, caplog):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    test = write_csv(tmp_path / "test.csv", sentiment_rows(12, seed=3))
    raw = {"data": {"train": str(train), "test": str(test)}, "model": {"name": str(tiny_model_dir)},
           "strategy": {"name": "lora", "r": 4}, "train": {"max_steps": 4, "progress": False},
           "output": str(tmp_path / "auto")}
    report = auto(raw, AutoSettings(time_budget="20m"))
    result = report["result"]
    assert set(result["members"]) == {"auto (lora)", "tfidf"} and result["split"] == "test"
    assert all(isinstance(m["value"], float) for m in result["members"].values())
    strategy = yaml.safe_load((Path(result["run_dir"]) / "transferlm.yaml").read_text())["strategy"]
    assert (strategy["name"], strategy["r"]) == ("lora", 4)  # the user's strategy settings reach the member
    with caplog.at_level("INFO", logger="transferlm"):
        again = auto(raw, AutoSettings(time_budget="20m"))  # the same command again: the plan and runs are reused
    assert "continuing the plan" in caplog.text and again["result"]["members"] == result["members"]
    assert (tmp_path / "auto" / "auto-report.md").read_text().count("## ") >= 4
    words = shlex.split(result["reproduce"])
    args = build_parser(words[1:]).parse_args(words[1:])
    saved = build_config(yaml.safe_load((Path(result["run_dir"]) / "transferlm.yaml").read_text()))
    assert config_to_dict(config_from_args(args)) == config_to_dict(saved)


def test_auto_trains_the_tuned_settings_with_the_trials_evaluation_schedule(tiny_model_dir, tmp_path, monkeypatch):
    from transferlm.experiments import tune as tune_module

    real = tune_module.tune  # the real search, held to 2 trials to keep the test short
    monkeypatch.setattr(tune_module, "tune", lambda config, settings: real(config, settings.model_copy(
        update={"trials": 2, "pruner": "none"})))
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    raw = {"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir)},
           "train": {"max_steps": 4, "progress": False}, "output": str(tmp_path / "auto")}
    report = auto(raw, AutoSettings(time_budget="20m", tune=True))
    tuned = next(c for c in report["plan"]["choices"] if c["key"] == "tune")["value"]
    saved = yaml.safe_load((Path(report["result"]["run_dir"]) / "transferlm.yaml").read_text())["train"]
    assert saved["lr"] == tuned["train.lr"]
    assert saved["evaluations"] == 5  # as each trial evaluated: the schedule that chose the best trial's checkpoint
    assert "--evaluations 5" in report["result"]["reproduce"]


def test_auto_on_pairs_compares_with_the_model_used_as_it_is(tiny_model_dir, tmp_path):
    rows = [{"a": r["text"], "b": r["text"] if i % 2 else "an unrelated line", "score": 4.0 if i % 2 else 0.5}
            for i, r in enumerate(sentiment_rows(40, seed=1))]
    encoder = sentence_encoder(tiny_model_dir, tmp_path / "encoder")
    raw = {"data": {"train": str(write_csv(tmp_path / "train.csv", rows)), "text_column": "a",
                    "text_pair_column": "b", "label_column": "score"},
           "model": {"name": str(encoder)}, "train": {"max_steps": 2, "progress": False},
           "output": str(tmp_path / "auto")}
    report = auto(raw, AutoSettings(time_budget="20m"))
    encoding = next(c for c in report["plan"]["choices"] if c["key"] == "task.pair_encoding")
    assert encoding["value"] == "bi" and "sentence-embedding" in encoding["why"]
    result = report["result"]
    # the strongest baseline without transfer, and the pretrained model's own similarity with no training
    assert set(result["members"]) == {"auto (full)", "ridge", "cosine"}, result["members"]
    assert result["members"]["cosine"]["value"] > 0.9  # identical texts have cosine 1: the pairs are separable
    assert "--pair-encoding bi" in result["reproduce"]
    # a checkpoint that is not a sentence-embedding model reads the pair as one input
    plain = plan({**raw, "model": {"name": str(tiny_model_dir)}, "output": str(tmp_path / "plain")},
                 AutoSettings(time_budget="20m", dry_run=True))
    assert next(c for c in plain.choices if c.key == "task.pair_encoding").value == "cross"


@pytest.mark.parametrize("settings", [
    {"task": {"type": "regression"}, "data": {"format": "tsv", "header": False, "text_column": 5, "text_pair_column": 6,
                                              "label_column": 4, "quoting": False},
     "train": {"lr": 5e-5, "epochs": 12.0, "report_to": ["tensorboard"], "max_grad_norm": None},
     "model": {"max_length": 64}},
    {"strategy": {"name": "lora", "r": 16, "target_modules": ["query", "key"]},
     "data": {"text_column": ["title", "on"]}},
    {"strategy": {"name": "last-n", "layers": 2, "layer_lr_decay": 0.9}, "data": {"label_column": "yes"}},
    {"task": {"type": "ner", "tag_scheme": "bioes", "stride": 16}, "strategy": {"name": "contrastive"}},
    {"task": {"type": "classification", "multi_label": True, "class_weights": [1.0, 2.0]}},
], ids=["regression-tsv", "lora-two-text-columns", "last-n", "ner", "multi-label"])
def test_command_line_round_trips_settings_of_every_kind(settings, tmp_path):
    data = {**settings, "data": {"train": str(tmp_path / "x.csv"), **settings.get("data", {})},
            "output": str(tmp_path / "run")}
    config = build_config(data)
    words = command_line(config)
    assert words[:2] == ["transferlm", "train"] and "--set" not in words and "--strategy" in words
    if settings.get("task", {}).get("tag_scheme"):  # a plain word is written plain; "on", "yes", "5" are quoted (YAML)
        assert words[words.index("--tag-scheme") + 1] == "bioes"
    args = build_parser(words[1:]).parse_args(words[1:])
    assert config_to_dict(config_from_args(args)) == config_to_dict(config)


def test_rank_and_auto_from_python(tiny_model_dir, tmp_path):
    import transferlm

    train = write_csv(tmp_path / "train.csv", sentiment_rows(30, seed=1))
    base = {"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir), "max_length": 32}}
    ranked = transferlm.rank({**base, "output": str(tmp_path / "rank")}, models=[str(tiny_model_dir)])
    assert list(ranked.table["model"]) == [str(tiny_model_dir)] and ranked.report["by"] == "logme"
    planned = transferlm.auto({**base, "output": str(tmp_path / "auto")}, dry_run=True)
    assert planned["dry_run"] and planned["plan"]["task"] == "classification"
    with pytest.raises(ConfigError, match="time_budget"):
        transferlm.auto({**base, "output": str(tmp_path / "auto")}, time_budget=[1])


def test_long_inputs_are_planned_from_the_token_lengths(tiny_model_dir, tmp_path):
    rows = [{"text": " ".join([r["text"]] * 20), "label": r["label"]} for r in sentiment_rows(40, seed=1)]
    train = write_csv(tmp_path / "train.csv", rows)
    planned = plan({"data": {"train": str(train)}, "model": {"name": str(tiny_model_dir)},
                    "output": str(tmp_path / "a")}, AutoSettings(dry_run=True))
    length = next(c for c in planned.choices if c.key == "model.max_length")
    assert planned.profile["tokens"]["p95"] > length.value == 64  # the tiny model's limit
    assert "more than the 64 chosen" in length.why and "windows" in length.why


def test_auto_reads_its_section_of_a_shared_yaml(tiny_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": str(train)}, "model": {"name": str(tiny_model_dir)}, "output": str(tmp_path / "a"),
        "tune": {"trials": 3}, "compare": {"members": ["full"]}, "auto": {"dry_run": True, "time_budget": "45m"}}))
    assert main(["auto", str(config)]) == 0
    report = json.loads((tmp_path / "a" / "auto-plan.json").read_text())
    assert report["dry_run"] and report["plan"]["estimate"]["budget_seconds"] == 2700
    import transferlm

    assert transferlm.auto(config)["plan"]["estimate"]["budget_seconds"] == 2700


def test_report_says_when_the_untrained_model_beat_the_fine_tuned_one():
    from transferlm.experiments.auto_report import report_markdown

    plan = {"task": "regression", "inferred": "a numeric label", "profile": {"examples": 10}, "choices": []}
    result = {"metric": "spearman", "split": "test", "run_dir": "run", "reproduce": "transferlm train",
              "members": {"auto (full)": {"value": 0.7575, "kind": "transfer", "verdict": "below cosine"},
                          "ridge": {"value": 0.29, "kind": "baseline", "verdict": None},
                          "cosine": {"value": 0.82, "kind": "baseline", "verdict": None}},
              "negative_transfer": ["auto (full)"], "best_baseline": "cosine"}
    text = report_markdown({"plan": plan, "result": result})
    assert ("**Negative transfer:** auto (full) scored below cosine (the pretrained model as it is, with no "
            "training: fine-tuning made it worse) by more than the noise.") in text
    result.update(best_baseline="ridge")
    assert "scored below ridge by more than the noise." in report_markdown({"plan": plan, "result": result})
