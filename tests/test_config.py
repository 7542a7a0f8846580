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
