import pytest
from pydantic import ValidationError

from transferlm.config import build_config, parse_override
from transferlm.errors import ConfigError

BASE = {"data": {"train": "t.csv"}, "output": "out"}


def test_unknown_key_suggests_the_closest_valid_one():
    with pytest.raises(ConfigError) as info:
        build_config({**BASE, "train": {"lrr": 1e-4}})
    assert info.value.problems == ["train.lrr: unknown key; did you mean 'lr'?"]


def test_unknown_section_is_named():
    with pytest.raises(ConfigError) as info:
        build_config({**BASE, "trian": {"lr": 1e-4}})
    assert info.value.problems[0].startswith("trian: unknown key; did you mean 'train'")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        build_config({**BASE, "train": {"lr": -1, "batch_size": 0, "eval_every": "sometimes"}})
    fields = sorted(p.split(":")[0] for p in info.value.problems)
    assert fields[:2] == ["train.batch_size", "train.eval_every"] and "train.lr" in fields


def test_required_train_file_and_output():
    with pytest.raises(ConfigError, match="data.train is required"):
        build_config({"output": "x"})


def test_dotted_overrides_are_typed_and_applied_last():
    key, value = parse_override("train.lr=3e-5")
    config = build_config({**BASE, "train": {"lr": 1e-3}}, [(key, value), parse_override("train.eval_every=100")])
    assert config.train.lr == pytest.approx(3e-5) and config.train.eval_every == 100


def test_override_without_equals_sign_is_explained():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_config_is_frozen():
    config = build_config(BASE)
    with pytest.raises(ValidationError):
        config.train.lr = 1.0  # type: ignore[misc]


BASE = {"data": {"train": "t.csv"}, "output": "o"}


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as error:
        build_config({**BASE, **data})
    return error.value.problems


def test_task_and_strategy_select_their_own_settings_class():
    config = build_config({**BASE, "task": {"type": "ner", "stride": 8}, "strategy": {"name": "lora", "r": 4}})
    assert type(config.task).__name__ == "NerSettings" and config.task.stride == 8
    assert type(config.strategy).__name__ == "LoraSettings" and config.strategy.r == 4
    saved = config.model_dump(mode="json")  # the chosen class's keys are written, not only the base's
    assert saved["task"]["tag_scheme"] == "auto" and saved["strategy"]["target_modules"] is None
    assert build_config(saved) == config


def test_a_key_of_another_task_names_its_task_and_what_applies():
    [problem] = problems_of({"task": {"max_answer_length": 8}})
    assert problem.startswith("task.max_answer_length: not a setting of task classification (it is a setting of "
                              "task qa;")
    assert ("classification's settings are: long_inputs, stride, window_aggregate, pooling, multi_label, threshold, "
            "class_weights, label_delimiter") in problem
    [problem] = problems_of({"strategy": {"name": "frozen", "gradual_unfreeze": True}})
    assert problem.startswith("strategy.gradual_unfreeze: not a setting of strategy frozen (it is a setting of "
                              "strategy bitfit, full, last-n, lora;")
    [problem] = problems_of({"task": {"type": "ner", "strid": 8}})
    assert "did you mean 'stride'?" in problem


def test_unknown_task_and_missing_required_setting_keep_their_path():
    assert problems_of({"task": {"type": "nerr"}}) == [
        "task.type: unknown task 'nerr'; choose one of: causal-lm, classification, masked-lm, ner, qa, regression. "
        "Did you mean 'ner'?"]
    assert problems_of({"strategy": {"name": "last-n"}}) == [
        "strategy.layers: required by strategy last-n: How many top transformer layers train (required)."]
    assert problems_of({"task": {"type": "ner", "stride": -1}}) == [
        "task.stride: Input should be greater than or equal to 0"]


def test_old_spellings_move_with_a_deprecation_message(caplog):
    with caplog.at_level("WARNING"):
        config = build_config({**BASE, "task": {"type": "ner"}, "data": {"train": "t", "tag_scheme": "bio"},
                               "strategy": {"name": "lora", "lora": {"r": 16}}})
    assert config.task.tag_scheme == "bio" and config.strategy.r == 16
    assert "data.tag_scheme is now task.tag_scheme" in caplog.text
    assert "strategy.lora.r is now strategy.r" in caplog.text


def test_a_config_saved_by_0_1_still_builds():
    """0.1 saved every task's and strategy's keys, most at their defaults; those say nothing and are dropped."""
    saved = {**BASE, "task": {"type": "classification", "multi_label": False, "pooling": "mean", "threshold": 0.5,
                              "class_weights": "none", "stride": None, "label_all_subwords": False,
                              "max_answer_length": 30, "n_best": 20, "mlm_probability": 0.15, "whole_word_mask": False},
             "data": {"train": "t", "tokens_column": "tokens", "question_column": "question",
                      "documents": "paragraphs"},
             "strategy": {"name": "full", "layers": None, "layer_lr_decay": 1.0, "gradual_unfreeze": False,
                          "cache_features": True, "lora": {"r": 8, "alpha": 16.0, "dropout": 0.1,
                                                           "target_modules": None, "merge": False},
                          "contrastive": {"pairs_per_example": 40, "head_c": 1.0}}}
    config = build_config(saved)
    assert config.task.pooling == "mean" and config.strategy.name == "full"


def test_an_error_inside_a_mapping_of_sections_keeps_its_whole_path():
    from transferlm.experiments.config import TuneSettings, load_experiment

    with pytest.raises(ConfigError) as error:
        load_experiment(None, "tune", [("data.train", "t"), ("output", "o"),
                                       ("tune.space", {"train.lr": {"low": 1e-5, "high": 1e-3}})], TuneSettings)
    assert error.value.problems == ["tune.space.train.lr.type: Field required"]


def test_every_metric_a_task_reports_for_selection_declares_its_direction():
    from transferlm.tasks import TASKS

    for name in TASKS.names():
        directions = TASKS.get(name).metric_directions
        assert directions and all(isinstance(v, bool) for v in directions.values()), name
    assert TASKS.get("regression").metric_directions["rmse"] is False
