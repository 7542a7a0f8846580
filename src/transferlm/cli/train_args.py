"""`transferlm train` flags, generated from the settings classes so --help and the YAML never disagree."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from transferlm.cli.flags import SELECTED, Flag, add_flags, flag_overrides, run_flags
from transferlm.config.load import build_config, parse_override, read_yaml
from transferlm.config.schema import RunConfig
from transferlm.config.selected import StrategySettings, TaskSettings
from transferlm.errors import ConfigError


def add_train_arguments(parser: argparse.ArgumentParser, resume: bool = True,
                        chosen: dict[str, str | None] | None = None) -> list[Flag]:
    """A flag for every run-config key. ``chosen`` (the task and strategy named on the command line) decides which
    task and strategy settings ``--help`` documents; the others are accepted and validated, their help hidden."""
    chosen = chosen or {}
    picked = {"task": chosen.get("task") or TaskSettings.model_fields["type"].default,
              "strategy": chosen.get("strategy") or StrategySettings.model_fields["name"].default}
    parser.add_argument("config", nargs="?", type=Path, help="YAML config; flags and --set override its values.")
    common = parser.add_argument_group("settings (each is also a YAML key, shown in brackets)")
    groups = {section: parser.add_argument_group(f"settings of {section} {name}") for section, name in picked.items()}

    def group_of(flag: Flag):
        if not flag.owners:
            return common
        section = flag.key.split(".", 1)[0]
        return groups[section] if picked[section] in flag.owners else None

    flags = run_flags()
    add_flags(parser, flags, group_of)
    parser.epilog = _others(picked)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
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
    return flags


def _others(picked: dict[str, str]) -> str:
    lines = []
    for section, (registry, _, _) in SELECTED.items():
        others = [name for name in registry.names() if name != picked[section]]
        kind = "tasks" if section == "task" else "strategies"
        lines.append(f"Other {kind} have settings of their own: {', '.join(others)} "
                     f"(`--{section} NAME --help` lists them).")
    return "\n".join(lines)


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
    return flag_overrides(args, run_flags()) + [parse_override(text) for text in args.overrides]


def _saved_config(output: str | None) -> dict[str, Any]:
    if output is None:
        raise ConfigError("--resume needs --output DIR (the interrupted run), or the original config file")
    saved = Path(output) / "transferlm.yaml"
    if not saved.is_file():
        raise ConfigError(f"{output}: no saved config to resume from; pass the original config or flags")
    return read_yaml(saved)
