"""Which command-line flag sets which config key: a flag for every key of the run config, named from its field.

A flag is ``--`` plus the key's last part (``train.batch_size`` -> ``--batch-size``) unless the field names its own
(``json_schema_extra={"flag": ...}``: ``--model`` for model.name). The mapping is the schema's, so it lives here,
below the CLI: the command line parses with it (``cli/flags.py``), and ``command_line`` writes a config back as
the flags that re-create it (the reproduce line of ``transferlm auto``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


def _flag_words(flag: Flag, value: Any) -> list[str]:
    """One setting as the command line writes it (what ``cli/flags.parse_value`` reads back)."""
    if isinstance(value, bool):
        return [flag.flag if value else "--no-" + flag.flag[2:]]
    if value is None:
        return [flag.flag, "null"]
    if isinstance(value, dict):
        return [flag.flag, json.dumps(value)]  # JSON is YAML: read back as a mapping
    if isinstance(value, (list, tuple)):
        if not value:
            return [flag.flag, "[]"]
        if all(isinstance(v, str) for v in value):  # text items: one occurrence each, taken whole
            return [word for v in value for word in (flag.flag, v)]
        return [flag.flag, json.dumps(list(value))]
    return [flag.flag, str(value)]


def command_line(config: RunConfig, command: str = "train") -> list[str]:
    """``transferlm COMMAND`` with the flags that re-create ``config``: every setting that differs from its default
    (for the same task and strategy), resolved values included, so the line is explicit about what ran."""
    from transferlm.config.load import build_config, config_to_dict

    given = config_to_dict(config)
    defaults = config_to_dict(build_config({"task": {"type": config.task.type},
                                            "strategy": {"name": config.strategy.name},
                                            "data": {"train": given["data"]["train"]}, "output": given["output"]}))
    words = ["transferlm", command]
    for flag in run_flags():
        present, value = _dotted(given, flag.key)
        if not present:
            continue  # a key of another task or strategy
        _, default = _dotted(defaults, flag.key)
        if value != default or flag.key in ("task.type", "data.train", "model.name", "output"):
            words += _flag_words(flag, value)
    return words
