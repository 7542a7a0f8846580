"""The auto defaults: train.epochs, train.lr, train.batch_size and task.pooling are chosen at run time (the task-aware
recipes of runs/recipes.py among them), logged and saved resolved."""

from __future__ import annotations

import logging

import pytest
import yaml

import transferlm
from conftest import interrupted_after, ner_rows, qa_rows, sentence_encoder, tiny_config, write_jsonl
from transferlm.config import strategy_settings
from transferlm.config.load import build_config
from transferlm.models.resolve import trained_with_mean_pooling
from transferlm.runs import layout
from transferlm.runs.recipes import DEFAULT_BATCH, RULES, SMALL_QA, auto_recipe
from transferlm.strategies import build_strategy
from transferlm.strategies.base import AUTO_MAX_EPOCHS, AUTO_MIN_STEPS, DEFAULT_BUDGET


def auto_config(model_dir, files, output, **train):
    config = tiny_config(model_dir, files, output, **train)
    for key in {"epochs", "lr", "batch_size"} - train.keys():  # left to auto unless given
        config["train"].pop(key)
    return config


def saved(run_dir) -> dict:
    return yaml.safe_load((run_dir / layout.CONFIG).read_text())


def test_auto_epochs_give_small_data_enough_steps_and_large_data_three_epochs():
    strategy = build_strategy(strategy_settings(name="full"))
    assert strategy.auto_epochs(2) == AUTO_MAX_EPOCHS  # 2 steps an epoch: capped
    assert strategy.auto_epochs(17) == 18  # 600 SST-2 rows at batch 32: 18 epochs, 306 steps
    assert strategy.auto_epochs(17) * 17 >= AUTO_MIN_STEPS
    assert strategy.auto_epochs(2000) == 3
    assert build_strategy(strategy_settings(name="contrastive")).auto_epochs(5) == 1  # one pass over the pairs


def test_auto_epochs_and_lr_are_logged_and_saved_resolved(tiny_model_dir, sentiment_files, tmp_path, caplog):
    config = auto_config(tiny_model_dir, sentiment_files, tmp_path / "run", batch_size=8)
    config["strategy"] = {"name": "frozen"}
    with caplog.at_level(logging.INFO, logger="transferlm"):
        result = transferlm.train(config)
    train = saved(result.run_dir)["train"]
    assert train["lr"] == 1e-3 and train["epochs"] == 30.0  # 40 rows at batch 8: 5 steps an epoch
    assert result.summary.steps == 150
    assert "train.lr auto: 0.001 (strategy frozen's default)" in caplog.text
    assert "train.batch_size auto: 8" not in caplog.text  # given
    assert ("train.epochs auto: 30 (3 epochs of 5 steps, at least 300 steps, at most 30 epochs: the default budget)"
            in caplog.text)


def test_a_small_qa_run_with_no_training_flags_trains_5_epochs_at_batch_8(tiny_model_dir, tmp_path, caplog):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(20, seed=1, words=(3, 5))),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(4, seed=2, words=(3, 5)))}
    config = auto_config(tiny_model_dir, files, tmp_path / "run", max_steps=1)
    config["model"]["max_length"] = 32
    config["task"] = {"type": "qa"}
    with caplog.at_level(logging.INFO, logger="transferlm"):
        result = transferlm.train(config)
    train = saved(result.run_dir)["train"]
    assert (train["batch_size"], train["lr"]) == (8, 1e-4)
    assert "train.batch_size auto: 8 (from bench/README.md (auto): SQuAD v1.1 at lr 1e-4" in caplog.text
    assert "train.lr auto: 0.0001 (from bench/README.md (squad)" in caplog.text
    epochs = next(line for line in caplog.messages if line.startswith("train.epochs auto:"))
    assert "(5 epochs of " in epochs and "after 5 epochs against 3" in epochs


def test_explicit_values_win_over_auto(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1, lr=3e-4)
    config["strategy"] = {"name": "lora"}
    result = transferlm.train(config)
    train = saved(result.run_dir)["train"]
    assert (train["epochs"], train["lr"], train["batch_size"]) == (1, 3e-4, 8)


def test_a_run_with_auto_epochs_and_batch_resumes(tiny_model_dir, sentiment_files, tmp_path):
    config = auto_config(tiny_model_dir, sentiment_files, tmp_path / "run", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt), interrupted_after(5):
        transferlm.train(config)
    resumed = transferlm.train(config, resume=True)  # "auto" now against the saved 30.0 and 32: the same settings
    assert resumed.summary.steps == 60  # 40 rows at batch 32: 2 steps an epoch, 30 epochs
    assert saved(resumed.run_dir)["train"]["batch_size"] == 32


def test_auto_pooling_is_mean_for_a_mean_pooled_sentence_encoder(tiny_model_dir, sentiment_files, tmp_path):
    assert not trained_with_mean_pooling(tiny_model_dir)
    encoder = sentence_encoder(tiny_model_dir, tmp_path / "encoder")
    assert trained_with_mean_pooling(encoder)

    result = transferlm.train(tiny_config(encoder, sentiment_files, tmp_path / "mean", epochs=1))
    assert saved(result.run_dir)["task"]["pooling"] == "mean"
    assert (result.run_dir / "head.safetensors").is_file()  # the mean-pooling classifier's layout
    plain = transferlm.train(tiny_config(tiny_model_dir, sentiment_files, tmp_path / "cls", epochs=1))
    assert saved(plain.run_dir)["task"]["pooling"] == "cls"


# --- recipes ---
def test_the_recipe_depends_on_the_task_and_says_why():
    full = build_strategy(build_config({"data": {"train": "x.csv"}, "output": "o"}).strategy)
    ner = auto_recipe("ner", full, "encoder", 1000)
    assert ner.lr == 1.8e-4 and "CoNLL" in ner.why["lr"]
    few = auto_recipe("classification", full, "encoder", 32)
    assert few.lr == 1e-4 and "AG News" in few.why["lr"]
    plain = auto_recipe("classification", full, "encoder", 600)
    assert plain.lr == full.default_lr and plain.budget == DEFAULT_BUDGET
    assert plain.why == {"lr": "strategy full's default", "batch_size": "the default, 32",
                         "epochs": "the default budget"}
    assert auto_recipe("ner", full, "decoder", 1000).lr == full.default_lr  # the rule is for encoders
    assert (ner.batch_size, few.batch_size, plain.batch_size) == (DEFAULT_BATCH,) * 3
    assert all(rule.evidence for rule in RULES)


def test_a_small_qa_set_trains_5_epochs_at_batch_8_and_a_large_one_by_the_defaults():
    full = build_strategy(build_config({"data": {"train": "x.csv"}, "output": "o"}).strategy)
    small = auto_recipe("qa", full, "encoder", 1169)  # SQuAD's first 3 articles
    assert (small.lr, small.batch_size, small.budget.epochs) == (1e-4, 8, 5)
    assert all("SQuAD" in small.why[key] for key in ("lr", "batch_size", "epochs"))
    assert full.auto_epochs(310, small.budget) == 5  # 1,550 steps, as measured
    at_bound = auto_recipe("qa", full, "encoder", SMALL_QA)
    assert (at_bound.batch_size, at_bound.budget.epochs) == (8, 5)
    large = auto_recipe("qa", full, "encoder", SMALL_QA + 1)
    assert (large.lr, large.batch_size, large.budget) == (1e-4, DEFAULT_BATCH, DEFAULT_BUDGET)
    assert (large.why["batch_size"], large.why["epochs"]) == ("the default, 32", "the default budget")
    decoder = auto_recipe("qa", full, "decoder", 1169)  # measured on an encoder only
    assert (decoder.batch_size, decoder.budget) == (DEFAULT_BATCH, DEFAULT_BUDGET)


def test_a_ner_run_with_no_training_flags_uses_the_ner_rate(tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", ner_rows(16, seed=1))
    config = {"task": {"type": "ner"}, "data": {"train": str(train), "validation": str(train)},
              "model": {"name": str(tiny_model_dir), "max_length": 32},
              "train": {"max_steps": 2, "progress": False}, "output": str(tmp_path / "run")}
    result = transferlm.train(config)
    saved = build_config(yaml.safe_load((result.run_dir / "transferlm.yaml").read_text()))
    assert saved.train.lr == 1.8e-4
