"""Which command-line flag sets which config key: a flag for every key of the run config, named from its field.

A flag is ``--`` plus the key's last part (``train.batch_size`` -> ``--batch-size``) unless the field names its own
(``json_schema_extra={"flag": ...}``: ``--model`` for model.name). The mapping is the schema's, so it lives here,
below the CLI: the command line parses with it (``cli/flags.py``), and ``command_line`` writes a config back as
the flags that re-create it (the reproduce line of ``transferlm auto``).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from transferlm.config.schema import RunConfig
from transferlm.config.selected import STRATEGY_SETTINGS, TASK_SETTINGS, StrategySettings, TaskSettings

SELECTED = {"task": (TASK_SETTINGS, TaskSettings, "type"), "strategy": (STRATEGY_SETTINGS, StrategySettings, "name")}


@dataclass(frozen=True)
class Flag:
    key: str  # dotted key of the config the command reads
    flag: str
    field: FieldInfo
    owners: tuple[str, ...] = ()  # the tasks (strategies) whose settings have it; empty: every run has it

    @property
    def dest(self) -> str:
        return "cfg__" + self.key.replace(".", "__")


def flag_name(name: str, field: FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("flag") or "--" + name.replace("_", "-"))


def section_flags(section: type[BaseModel], prefix: str = "", taken: Iterable[str] = ()) -> list[Flag]:
    """Flags of a plain section (nested sections included); a name in ``taken`` gets the section's name in front
    (``--curve-evaluations`` beside train's ``--evaluations``)."""
    taken = set(taken)
    flags = []
    for name, field in section.model_fields.items():
        key = f"{prefix}{name}"
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            flags += section_flags(nested, f"{key}.", taken)
            continue
        if isinstance(field.json_schema_extra, dict) and "flag" in field.json_schema_extra \
                and field.json_schema_extra["flag"] is None:
            continue  # set by transferlm, not by a user on the command line
        flag = flag_name(name, field)
        if flag in taken and prefix:
            flag = f"--{prefix.rstrip('.').replace('.', '-').replace('_', '-')}-{flag[2:]}"
        flags.append(Flag(key, flag, field))
    return flags


def _selected_flags(section: str) -> list[Flag]:
    registry, base, name_key = SELECTED[section]
    owners: dict[str, list[str]] = {}
    fields: dict[str, FieldInfo] = {}
    for owner in registry.names():
        for name, field in registry.get(owner).model_fields.items():
            if name != name_key:
                owners.setdefault(name, []).append(owner)
                fields.setdefault(name, field)
    flags = [Flag(f"{section}.{name_key}", flag_name(name_key, base.model_fields[name_key]),
                  base.model_fields[name_key])]
    return flags + [Flag(f"{section}.{name}", flag_name(name, field), field, tuple(owners[name]))
                    for name, field in fields.items()]


def run_flags() -> list[Flag]:
    """A flag for every key of the run config, of every registered task and strategy."""
    flags: list[Flag] = []
    for name, field in RunConfig.model_fields.items():
        if name in SELECTED:
            flags += _selected_flags(name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            flags += section_flags(field.annotation, f"{name}.")
        else:
            flags.append(Flag(name, flag_name(name, field), field))
    return flags


def _dotted(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _is_list_field(field: FieldInfo) -> bool:
    """A field whose flag repeats (a list, or an optional list); a list in a union with text is one JSON value."""
    annotation = field.annotation
    if typing.get_origin(annotation) in (list, tuple):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and typing.get_origin(members[0]) in (list, tuple)
    return False


def _is_text_field(field: FieldInfo) -> bool:
    annotation = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and members[0] in (str, Path)
    return annotation in (str, Path)


def _reads_back(text: str) -> bool:
    """Whether YAML reads ``text`` back as this same string (``bio`` does; ``on``, ``null``, ``1``, ``a: b`` do not)."""
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _flag_words(flag: Flag, value: Any) -> list[str]:
    """One setting as the command line writes it (what ``cli/flags.parse_value`` reads back): text as it is where
    the field takes only text or where YAML reads it back unchanged, else as JSON (so "on" stays a string)."""
    if isinstance(value, bool):
        return [flag.flag if value else "--no-" + flag.flag[2:]]
    if isinstance(value, str):
        return [flag.flag, value if _is_text_field(flag.field) or _reads_back(value) else json.dumps(value)]
    if isinstance(value, (list, tuple)) and _is_list_field(flag.field) and value \
            and all(isinstance(v, str) for v in value):
        return [word for v in value for word in (flag.flag, v)]  # text items: one occurrence each, taken whole
    return [flag.flag, json.dumps(value if not isinstance(value, tuple) else list(value))]


def command_line(config: RunConfig, command: str = "train") -> list[str]:
    """``transferlm COMMAND`` with the flags that re-create ``config``: the task, the strategy with all its
    settings, and every other setting that differs from its default (resolved values included), so the line is
    explicit about what ran."""
    from transferlm.config.load import build_config, config_to_dict

    given = config_to_dict(config)
    defaults = config_to_dict(build_config({"task": {"type": config.task.type}, "strategy": given["strategy"],
                                            "data": {"train": given["data"]["train"]}, "output": given["output"]}))
    always = ("task.type", "data.train", "model.name", "output")
    words = ["transferlm", command]
    for flag in run_flags():
        present, value = _dotted(given, flag.key)
        if not present:
            continue  # a key of another task or strategy
        _, default = _dotted(defaults, flag.key)
        if value != default or flag.key in always or flag.key.startswith("strategy."):
            words += _flag_words(flag, value)
    return words
