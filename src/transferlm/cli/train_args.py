"""`transferlm train` flags, generated from the config schema so --help and the YAML never disagree."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

import yaml

from transferlm.config.load import build_config, parse_override, read_yaml
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError

# flag -> dotted config key. Booleans become switches that set the value after "=".
FLAGS: list[tuple[str, str]] = [
    ("--model", "model.name"),
    ("--max-length", "model.max_length"),
    ("--task", "task.type"),
    ("--multi-label", "task.multi_label=true"),
    ("--pooling", "task.pooling"),
    ("--threshold", "task.threshold"),
    ("--class-weights", "task.class_weights"),
    ("--train", "data.train"),
    ("--validation", "data.validation"),
    ("--test", "data.test"),
    ("--format", "data.format"),
    ("--text-column", "data.text_column"),
    ("--text-pair-column", "data.text_pair_column"),
    ("--label-column", "data.label_column"),
    ("--label-delimiter", "data.label_delimiter"),
    ("--validation-split", "data.validation_split"),
    ("--drop-empty", "data.drop_empty=true"),
    ("--tag-scheme", "data.tag_scheme"),
    ("--conll-tag-column", "data.conll_tag_column"),
    ("--stride", "task.stride"),
    ("--label-all-subwords", "task.label_all_subwords=true"),
    ("--max-answer-length", "task.max_answer_length"),
    ("--n-best", "task.n_best"),
    ("--mlm-probability", "task.mlm_probability"),
    ("--whole-word-mask", "task.whole_word_mask=true"),
    ("--question-column", "data.question_column"),
    ("--context-column", "data.context_column"),
    ("--answers-column", "data.answers_column"),
    ("--id-column", "data.id_column"),
    ("--messages-column", "data.messages_column"),
    ("--prompt-column", "data.prompt_column"),
    ("--completion-column", "data.completion_column"),
    ("--documents", "data.documents"),
    ("--strategy", "strategy.name"),
    ("--pairs-per-example", "strategy.contrastive.pairs_per_example"),
    ("--epochs", "train.epochs"),
    ("--max-steps", "train.max_steps"),
    ("--min-steps", "train.min_steps"),
    ("--batch-size", "train.batch_size"),
    ("--grad-accum", "train.grad_accum"),
    ("--lr", "train.lr"),
    ("--weight-decay", "train.weight_decay"),
    ("--warmup-ratio", "train.warmup_ratio"),
    ("--eval-every", "train.eval_every"),
    ("--evaluations", "train.evaluations"),
    ("--checkpoint-every", "train.checkpoint_every"),
    ("--metric", "train.metric"),
    ("--patience", "train.early_stopping_patience"),
    ("--no-group-by-length", "train.group_by_length=false"),
    ("--bf16", "train.bf16=true"),
    ("--gradient-checkpointing", "train.gradient_checkpointing=true"),
    ("--seed", "train.seed"),
    ("--no-progress", "train.progress=false"),
    ("--output", "output"),
]


# A switch that turns a setting off says what the flag does, not what the setting (on by default) means.
SWITCH_OFF_HELP = {
    "--no-progress": "Show no progress bar.",
    "--no-group-by-length": "Batch examples in random order, without grouping similar lengths (more padding).",
}


def _description(dotted: str) -> str:
    model: Any = RunConfig
    *sections, key = dotted.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[key].description or ""


def add_train_arguments(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    parser.add_argument("config", nargs="?", type=Path, help="YAML config; flags and --set override its values.")
    group = parser.add_argument_group("settings (each is also a YAML key, shown in brackets)")
    for flag, target in FLAGS:
        key, _, switch = target.partition("=")
        dest = "cfg__" + key.replace(".", "__")
        described = SWITCH_OFF_HELP.get(flag) or _description(key)
        help_text = f"{described} [{key}]".replace("%", "%%")  # argparse formats help with %
        if switch:
            group.add_argument(flag, dest=dest, action="store_const", const=yaml.safe_load(switch), help=help_text)
        else:
            group.add_argument(flag, dest=dest, metavar=key.rsplit(".", 1)[-1].upper(), help=help_text)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override any config key, e.g. --set train.lr=3e-5 (repeatable; applied last).",
    )
    if resume:
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Continue the interrupted run in --output from its last checkpoint (same config).",
        )
    parser.add_argument("--overwrite", action="store_true", help="Replace whatever is in --output.")


def _is_text(dotted: str) -> bool:
    model: Any = RunConfig
    *sections, key = dotted.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[key].annotation in (str, Optional[str], Optional[Path])


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """YAML (or, for --resume without one, the interrupted run's saved config) < flags < --set."""
    overrides = overrides_from_args(args)
    return build_config(base_from_args(args, overrides), overrides)


def base_from_args(args: argparse.Namespace, overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """What the flags override: the YAML, the interrupted run's saved config for --resume, or nothing."""
    if args.config:
        return read_yaml(args.config)
    if args.resume:
        return _saved_config(dict(overrides).get("output"))
    return {}


def overrides_from_args(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Flags, then --set, as (dotted key, typed value) pairs."""
    overrides: list[tuple[str, Any]] = []
    for name, value in vars(args).items():
        if name.startswith("cfg__") and value is not None:
            key = name[len("cfg__") :].replace("__", ".")
            typed = isinstance(value, str) and not _is_text(key)
            overrides.append((key, yaml.safe_load(value) if typed else value))
    overrides += [parse_override(text) for text in args.overrides]
    return overrides


def _saved_config(output: str | None) -> dict[str, Any]:
    if output is None:
        raise ConfigError("--resume needs --output DIR (the interrupted run), or the original config file")
    saved = Path(output) / "transferlm.yaml"
    if not saved.is_file():
        raise ConfigError(f"{output}: no saved config to resume from; pass the original config or flags")
    return read_yaml(saved)
