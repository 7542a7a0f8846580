"""The CLI end to end on the tiny model, and its error output (message, no traceback, exit 1)."""

import io
import json

import pytest

from transferlm.cli.main import main


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def trained_run(tiny_model_dir, sentiment_files, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(
        capsys,
        "train",
        "--model",
        tiny_model_dir,
        "--train",
        sentiment_files["train"],
        "--validation",
        sentiment_files["dev"],
        "--test",
        sentiment_files["test"],
        "--epochs",
        1,
        "--batch-size",
        8,
        "--lr",
        "1e-2",
        "--no-progress",
        "--output",
        run,
    )
    assert code == 0, err
    assert f"run directory: {run}" in out and "test:" in out
    return run


def test_train_from_yaml_with_dotted_override(tiny_model_dir, sentiment_files, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model: {{name: {tiny_model_dir}, max_length: 32}}
data: {{train: {sentiment_files["train"]}, validation: {sentiment_files["dev"]}}}
train: {{epochs: 1, batch_size: 8, lr: 0.5, progress: false}}
output: {tmp_path / "run"}
""")
    code, out, err = run_cli(capsys, "train", config, "--set", "train.lr=1e-2", "--set", "train.seed=7")
    assert code == 0, err
    saved = (tmp_path / "run" / "transferlm.yaml").read_text()
    assert "lr: 0.01" in saved and "seed: 7" in saved


def test_evaluate_prints_metrics_and_json(trained_run, sentiment_files, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--data", sentiment_files["test"])
    assert code == 0 and "accuracy" in out and "confusion matrix" in out
    code, out, _ = run_cli(
        capsys,
        "evaluate",
        trained_run,
        "--data",
        sentiment_files["test"],
        "--json",
        "--report-dir",
        tmp_path / "report",
    )
    metrics = json.loads(out)
    assert metrics["n"] == 12 and set(metrics["per_class"]) == {"neg", "pos"}
    assert (tmp_path / "report" / "test_confusion.png").stat().st_size > 1000


def test_predict_from_text_file_csv_and_stdin(trained_run, sentiment_files, tmp_path, capsys, monkeypatch):
    texts = tmp_path / "texts.txt"
    texts.write_text("the film was great\n\na boring plot\n")
    code, out, err = run_cli(capsys, "predict", trained_run, "--input", texts)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["line"] for r in rows] == [1, 3] and "skipped 1 blank line" in err
    assert all(r["label"] in ("pos", "neg") and set(r["probabilities"]) == {"pos", "neg"} for r in rows)

    code, out, _ = run_cli(capsys, "predict", trained_run, "--input", sentiment_files["test"])
    assert code == 0 and len(out.splitlines()) == 12

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"very dull film\n")))
    code, out, _ = run_cli(capsys, "predict", trained_run, "--input", "-")
    assert code == 0 and json.loads(out)["text"] == "very dull film"


def test_bad_input_is_a_message_not_a_traceback(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("review,label\ngood,pos\n")
    code, out, err = run_cli(
        capsys, "train", "--model", tiny_model_dir, "--train", bad, "--output", tmp_path / "o", "--set", "train.lrr=1"
    )
    assert code == 1 and "Traceback" not in err
    assert "train.lrr: unknown key; did you mean 'lr'?" in err
    code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train", bad, "--output", tmp_path / "o")
    assert code == 1 and "column 'text' (data.text_column) not found; columns are 'review', 'label'" in err


def test_unknown_strategy_lists_the_registered_ones(tiny_model_dir, sentiment_files, tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "train",
        "--model",
        tiny_model_dir,
        "--train",
        sentiment_files["train"],
        "--strategy",
        "ful",
        "--output",
        tmp_path / "o",
    )
    expected = "strategy.name: unknown strategy 'ful'; choose one of: bitfit, contrastive, frozen, full, last-n, lora."
    assert code == 1 and f"{expected} Did you mean 'full'?" in err


def test_model_spec_that_resolves_to_nothing(sentiment_files, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "train", "--model", "./no/such/dir", "--train", sentiment_files["train"], "--output", tmp_path / "o"
    )
    assert code == 1 and "not a bundled alias, an existing directory or a hub id" in err and "minilm" in err


def test_evaluate_on_an_unfinished_run_explains(tmp_path, capsys, sentiment_files):
    (tmp_path / "half").mkdir()
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "half", "--data", sentiment_files["test"])
    assert code == 1 and "not a finished transferlm run" in err


def test_models_and_env(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "minilm" in out and "smollm2" in out
    code, out, _ = run_cli(capsys, "env", "--json")
    info = json.loads(out)
    assert code == 0 and info["torch_threads"] >= 1
    assert info["device"] == "cpu" or info["cuda_available"]


def test_help_is_generated_from_the_config_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "Peak learning rate." in out and "[train.lr]" in out and "--text-column" in out
    flat = " ".join(out.split())  # argparse wraps help lines
    # a boolean has both switches
    assert "--progress, --no-progress Show a progress bar on a terminal. [train.progress]" in flat
    assert "--group-by-length, --no-group-by-length Batch examples of similar length together" in flat


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_settings_of_the_task_and_strategy_given_and_names_the_others(capsys):
    plain = _help(capsys, "train")
    assert "[task.pooling]" in plain and "[task.long_inputs]" in plain and "[strategy.r]" not in plain
    assert "[task.tag_scheme]" not in plain
    assert "Other tasks have settings of their own: causal-lm, masked-lm, ner, qa" in plain
    ner = _help(capsys, "train", "--task", "ner", "--strategy", "lora")
    assert "settings of task ner:" in ner and "--tokens-column" in ner and "[task.stride]" in ner
    assert "[task.pooling]" not in ner and "[task.long_inputs]" not in ner
    assert "--lora-r R LoRA rank. [strategy.r]" in ner and "[strategy.cache_features]" not in ner
    assert "Other tasks have settings of their own: causal-lm, classification, masked-lm, qa" in ner


def test_every_key_of_every_task_and_strategy_has_one_flag():
    from transferlm.cli.flags import run_flags
    from transferlm.config.selected import STRATEGY_SETTINGS, TASK_SETTINGS

    flags = run_flags()
    assert len({f.flag for f in flags}) == len(flags), "two keys share a flag"
    keys = {f.key for f in flags}
    for section, registry in (("task", TASK_SETTINGS), ("strategy", STRATEGY_SETTINGS)):
        for name in registry.names():
            assert {f"{section}.{k}" for k in registry.get(name).model_fields} <= keys, name
    assert {"strategy.layers", "strategy.r", "strategy.target_modules", "model.init", "data.quoting"} <= keys


def test_a_key_of_another_task_given_as_a_flag_is_an_error_naming_its_task(capsys, tmp_path):
    code = main(["train", "--train", str(tmp_path / "t.csv"), "--output", str(tmp_path / "o"), "--tag-scheme", "bio"])
    err = capsys.readouterr().err
    assert code == 1 and "task.tag_scheme: not a setting of task classification (it is a setting of task ner" in err


def test_list_flags_are_comma_separated(tmp_path):
    from transferlm.cli.main import build_parser
    from transferlm.cli.train_args import config_from_args

    argv = ["train", "--train", "t.csv", "--output", "o", "--strategy", "lora", "--target-modules", "query",
            "--target-modules", "key",
            "--lora-r", "4", "--no-progress"]
    config = config_from_args(build_parser(argv).parse_args(argv))
    assert config.strategy.target_modules == ["query", "key"] and config.strategy.r == 4
    assert config.train.progress is False


def test_command_settings_take_their_flags_and_defaults_from_one_class():
    from transferlm.cli.flags import settings_from_args
    from transferlm.cli.main import build_parser
    from transferlm.errors import ConfigError
    from transferlm.serving.settings import ServeSettings

    def settings(argv, **values):
        return settings_from_args(build_parser(argv).parse_args(argv), **values)

    served = settings(["serve", "run", "--max-batch", "4", "--port", "9000"], api_key="from-env")
    assert (served.max_batch, served.port, served.api_key) == (4, 9000, "from-env")
    assert served.model_batch == ServeSettings.model_fields["model_batch"].default
    generated = settings(["generate", "m", "--prompt", "x", "--stop", "END, now", "--stop", "###", "--temperature",
                          "0.5"])
    assert generated.stop == ("END, now", "###") and generated.temperature == 0.5
    with pytest.raises(ConfigError, match="serve.max_batch: Input should be greater than or equal to 1"):
        settings(["serve", "run", "--max-batch", "0"])


def test_experiment_flags_come_from_their_section(tmp_path):
    from transferlm.cli.commands import _experiment
    from transferlm.cli.main import build_parser
    from transferlm.experiments.config import CurveSettings

    argv = ["curve", "--train", "t.csv", "--output", "o", "--members", "frozen,tfidf", "--sizes", "8,all",
            "--curve-evaluations", "3", "--evaluations", "2", "--seeds", "0,1"]
    config, settings = _experiment(build_parser(argv).parse_args(argv), "curve", CurveSettings)
    assert [m.name for m in settings.members] == ["frozen", "tfidf"] and settings.sizes == [8, "all"]
    assert settings.evaluations == 3 and config.train.evaluations == 2 and settings.seeds == [0, 1]
