"""Build a validated RunConfig from YAML, dotted overrides and CLI flags; report every problem at once."""

from __future__ import annotations

import difflib
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from transferlm.config.deprecated import moved_keys
from transferlm.config.schema import DataConfig, RunConfig
from transferlm.config.selected import STRATEGY_SETTINGS, TASK_SETTINGS, StrategySettings, TaskSettings
from transferlm.errors import ConfigError, RegistryError, RunDirError


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (model:, data:, train:, ...)")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=3e-5`` -> ("train.lr", 3e-5); the value is read as YAML so types come out right."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set train.lr=3e-5")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is a value, not a section; remove the extra dotted part")
        node = child
    node[parts[-1]] = value


def build_config(data: dict[str, Any], overrides: list[tuple[str, Any]] = ()) -> RunConfig:
    merged = _deep_copy(data)
    for key, value in overrides:
        set_dotted(merged, key, value)
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from e


def format_validation_error(error: ValidationError, root: type[BaseModel] = RunConfig) -> list[str]:
    """One line per field; a union's per-member failures are merged into one message."""
    merged: dict[str, list[str]] = {}
    for item in error.errors():
        loc = _field_path(item["loc"], root)
        if item["type"] == "extra_forbidden":
            message = f"unknown key{_suggest(item['loc'], root)}"
        else:
            message = item["msg"].removeprefix("Value error, ")
        merged.setdefault(loc, [])
        if message not in merged[loc]:
            merged[loc].append(message)
    return [f"{loc}: {' or '.join(messages)}" if loc else " or ".join(messages) for loc, messages in merged.items()]


def _field_path(loc: tuple, root: type[BaseModel]) -> str:
    """Keep the part of a pydantic location that names fields (and the keys of mappings of sections, e.g.
    ``tune.space.train.lr.type``); drop union member tags like 'int'."""
    parts: list[str] = []
    model: type[BaseModel] | None = root
    keyed = False  # the next part is a key of a mapping of sections (or an index into a list of them)
    for part in loc:
        if keyed:
            parts.append(str(part))
            keyed = False
            continue
        if model is None:  # past a leaf field: the rest are union tags or list indices
            break
        parts.append(str(part))
        field = model.model_fields.get(str(part))
        if field is None:  # an unknown key inside a section
            break
        model, keyed = _inner_section(field.annotation)
    return ".".join(parts)


def _inner_section(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section a field holds: directly, or as the values of a mapping or items of a list (then keyed)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        return _inner_section(args[0])
    if typing.get_origin(annotation) in (dict, list) and args:
        inner = args[-1]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner, True
    return None, False


def _suggest(loc: tuple, root: type[BaseModel]) -> str:
    model: type[BaseModel] = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.5)
    valid = ", ".join(model.model_fields)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {valid}"


def saved_sections(saved: dict[str, Any], where: str) -> tuple[DataConfig, TaskSettings, StrategySettings]:
    """The data, task and strategy settings of a saved run config, read leniently: keys this version does not know
    (written by another version) are dropped with a warning; 0.1's moved keys are read where they live now."""
    saved = moved_keys(saved)
    data = _lenient(DataConfig, saved.get("data") or {}, f"{where}/data")
    task_section = dict(saved.get("task") or {})
    task = _lenient_selected(TASK_SETTINGS, TaskSettings, "type", task_section, f"{where}/task")
    if "long_inputs" in type(task).model_fields and "long_inputs" not in task_section:
        # Written before 0.2, which read long inputs in windows: the model was trained on inputs cut at its length.
        task = task.model_copy(update={"long_inputs": "truncate"})
    strategy = _lenient_selected(STRATEGY_SETTINGS, StrategySettings, "name", saved.get("strategy") or {},
                                 f"{where}/strategy")
    return data, task, strategy


def _lenient_selected(registry, base: type[BaseModel], key: str, data: dict[str, Any], where: str):
    name = str(data.get(key, base.model_fields[key].default))
    try:
        cls = registry.get(name)
    except RegistryError as e:
        raise RunDirError(f"{where}: {e} (the run was written by a version that had it)") from e
    return _lenient(cls, data, where)


def _lenient(cls: type[BaseModel], data: dict[str, Any], where: str):
    known = {k: v for k, v in data.items() if k in cls.model_fields}
    for key in sorted(set(data) - set(known)):
        warnings.warn(f"{where}: ignoring unknown saved setting {key!r} (written by another transferlm version)",
                      stacklevel=4)
    try:
        return cls.model_validate(known)
    except ValidationError as e:
        raise RunDirError([f"{where}: {p}" for p in format_validation_error(e, cls)]) from e


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}
