"""Command-line flags generated from settings sections: every key has a flag, documented by its field.

A flag is ``--`` plus the key's last part (``train.batch_size`` -> ``--batch-size``) unless the field names its own
(``json_schema_extra={"flag": ...}``: ``--model`` for model.name). Booleans get ``--x`` and ``--no-x``. The task and
strategy sections contribute the keys of every registered task and strategy; ``--help`` documents those of the task
and strategy given and names the others only by their owner, while all stay accepted, so that a key of another task
reaches validation and is reported there with whose key it is.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic.fields import FieldInfo

from transferlm.config.flags import SELECTED, Flag, flag_name, run_flags, section_flags  # noqa: F401  (the CLI's names)
from transferlm.config.load import parse_override, read_yaml


def _choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return None


def _is_bool(field: FieldInfo) -> bool:
    return field.annotation is bool


def _is_list(annotation: Any) -> bool:
    """A list, or an optional list: comma-separated on the command line."""
    if typing.get_origin(annotation) in (list, tuple):
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and typing.get_origin(members[0]) in (list, tuple)
    return False


def _items_are_text(annotation: Any) -> bool:
    """Whether a list field holds strings (kept as written: '###' is a stop string, not a YAML comment)."""
    while typing.get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return all(a in (str, Ellipsis) for a in typing.get_args(annotation))


def _comma_separated(field: FieldInfo) -> bool:
    """A list of names that never hold commas (model specs), split at commas like numbers: ``--models a,b``."""
    return isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("comma_separated", False)


def _is_text(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and members[0] in (str, Path)
    return annotation in (str, Path)


def parse_value(text: str | list[str], field: FieldInfo) -> Any:
    """A flag's text as the field's type: text stays text; anything else is read as YAML (numbers, null, auto, a
    YAML mapping). A list flag may be repeated; each occurrence of a list of numbers or names is comma-separated
    (``--seeds 0,1,2``), while text items are taken whole (``--stop ", "`` is one stop string)."""
    if isinstance(text, list):
        values: list[Any] = []
        for occurrence in text:
            if occurrence.lstrip().startswith("["):
                values += yaml.safe_load(occurrence)
            elif _items_are_text(field.annotation) and not _comma_separated(field):
                values.append(occurrence)
            elif _items_are_text(field.annotation):
                values += [part.strip() for part in occurrence.split(",") if part.strip()]
            else:
                values += [yaml.safe_load(part) for part in occurrence.split(",") if part.strip()]
        return values
    if _is_text(field.annotation):
        return text
    return yaml.safe_load(text)


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag], group_of: Callable[[Flag], Any]) -> None:
    """Add ``flags``; ``group_of`` gives each its argument group, or None to accept it with its help hidden."""
    for f in flags:
        group = group_of(f)
        target = group if group is not None else parser
        described = (f.field.description or "").replace("%", "%%")  # argparse formats help with %
        help_text = f"{described} [{f.key}]" if group is not None else argparse.SUPPRESS
        if _is_bool(f.field):
            target.add_argument(f.flag, dest=f.dest, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        choices = _choices(f.field.annotation)
        metavar = "{" + ",".join(choices) + "}" if choices else f.key.rsplit(".", 1)[-1].upper()
        action = "append" if _is_list(f.field.annotation) else "store"  # a list flag may be repeated
        target.add_argument(f.flag, dest=f.dest, metavar=metavar, action=action, help=help_text)


def flag_overrides(args: argparse.Namespace, flags: Sequence[Flag], prefix: str = "") -> list[tuple[str, Any]]:
    """The flags given, as (dotted key, typed value) pairs; ``prefix`` is put before each key."""
    found = []
    for f in flags:
        value = getattr(args, f.dest, None)
        if value is not None:
            found.append((prefix + f.key, parse_value(value, f.field) if isinstance(value, (str, list)) else value))
    return found


def selected_names(argv: Sequence[str]) -> dict[str, str | None]:
    """The task and strategy a command line names (by flag, --set, or in its YAML config), for ``--help``."""
    chosen: dict[str, str | None] = {"task": None, "strategy": None}
    keys = {"--task": "task", "--strategy": "strategy"}
    argv = list(argv)
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in keys:
            chosen[keys[name]] = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
        elif arg == "--set" and i + 1 < len(argv):
            key, value = parse_override(argv[i + 1])
            for section, (_, _, name_key) in SELECTED.items():
                if key == f"{section}.{name_key}":
                    chosen[section] = str(value)
    for arg in argv:
        if arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            try:
                data = read_yaml(Path(arg))
            except Exception:  # a broken YAML is reported when the command runs, not while building --help
                continue
            for section, (_, _, name_key) in SELECTED.items():
                if chosen[section] is None and isinstance(data.get(section), dict):
                    chosen[section] = data[section].get(name_key)
    return chosen


def settings_from_args(args: argparse.Namespace, **values: Any) -> Any:
    """The settings object of a command that has no run config (``_settings_group``): its flags, and ``values``
    for keys the command fills itself (e.g. an API key from the environment), given flags winning."""
    cls, flags = args.settings_flags
    return cls(**{**values, **dict(flag_overrides(args, flags))})
