"""Sections chosen by name: each task and each strategy declares its own settings class, registered with it.

``task.type`` picks the task's class and ``strategy.name`` the strategy's; a key that the chosen class lacks is
an error naming the task (or strategy), listing the keys that do apply and, where the key belongs to other tasks,
naming them. The registries are filled by the modules that define the tasks and strategies (``register_task``,
``register_strategy``); ``plugins`` names the package whose import registers the built-in ones, so this layer never
imports the layers above it.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from transferlm.errors import ConfigError, RegistryError
from transferlm.registry import Registry


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def flag(name: str) -> dict[str, str]:
    """A field's command-line flag where the field's own name would be unclear (``--model`` for model.name)."""
    return {"flag": name}


class CommandSettings(Section):
    """The settings of a command that takes no run config (serve, generate, export, predict, perplexity): built
    from keyword arguments or the command's flags, each problem reported as ``section.key: ...``."""

    section: ClassVar[str]

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as e:
            from transferlm.config.load import format_validation_error  # the formatter sits above this module

            raise ConfigError([f"{self.section}.{p}" for p in format_validation_error(e, type(self))]) from None


class TaskSettings(Section):
    """What every task's settings have: the task's name. Each task subclasses it with its own keys."""

    type: str = Field(
        "classification",
        description="Task to transfer to (see `transferlm train --help` for the registered tasks; `transferlm "
        "adapt` picks masked-lm or causal-lm from the model).",
        json_schema_extra=flag("--task"),
    )


class StrategySettings(Section):
    """What every strategy's settings have: the strategy's name. Each strategy subclasses it with its own keys."""

    name: str = Field(
        "full",
        description="How much of the model trains (see `transferlm train --help` for the registered strategies).",
        json_schema_extra=flag("--strategy"),
    )


TASK_SETTINGS: Registry[type[TaskSettings]] = Registry("task", plugins="transferlm.tasks")
STRATEGY_SETTINGS: Registry[type[StrategySettings]] = Registry("strategy", plugins="transferlm.strategies")


def task_settings(type: str = "classification", **values: Any) -> TaskSettings:
    """The settings of task ``type``, validated strictly (e.g. ``task_settings("ner", stride=16)``)."""
    return select(TASK_SETTINGS, "type", {"type": type, **values}, "task")


def strategy_settings(name: str = "full", **values: Any) -> StrategySettings:
    """The settings of strategy ``name``, validated strictly (e.g. ``strategy_settings("lora", r=16)``)."""
    return select(STRATEGY_SETTINGS, "name", {"name": name, **values}, "strategy")


def select(registry: Registry, key: str, value: Any, section: str) -> Any:
    """Validate ``value`` (a mapping with ``key`` naming the class) with the registered class it names."""
    base = TaskSettings if registry is TASK_SETTINGS else StrategySettings
    if isinstance(value, base):
        if type(value) is registry.get(str(getattr(value, key))):
            return value  # already validated by the class its name selects
        value = value.model_dump()  # a base or other class carrying this name: validated as the selected class
    if not isinstance(value, dict):
        raise ValidationError.from_exception_data(section, [_error("section_type", f"must be a mapping of {section} "
                                                                   f"settings, got {type(value).__name__}", (), value)])
    name = value.get(key, base.model_fields[key].default)
    try:
        cls = registry.get(str(name))
    except RegistryError as e:
        raise ValidationError.from_exception_data(section, [_error("unknown_name", str(e), (key,), name)]) from None
    try:
        return cls.model_validate(value)
    except ValidationError as e:
        raise ValidationError.from_exception_data(
            section, [_explained(item, cls, registry, key, section) for item in e.errors(include_url=False)]
        ) from None


def _error(kind: str, message: str, loc: tuple, value: Any) -> dict[str, Any]:
    return {"type": PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}")), "loc": loc,
            "input": value}


def _explained(item: dict[str, Any], cls: type[BaseModel], registry: Registry, key: str, section: str) -> dict:
    """An error item, re-made; a key the chosen class lacks says whose key it is and what applies here."""
    name = cls.model_fields[key].default
    what = "task" if section == "task" else "strategy"
    if item["type"] == "missing" and len(item["loc"]) == 1:
        field = cls.model_fields.get(str(item["loc"][0]))
        described = f": {field.description}" if field is not None and field.description else ""
        return _error("missing", f"required by {what} {name}{described}", tuple(item["loc"]), None)
    if item["type"] != "extra_forbidden" or len(item["loc"]) != 1:
        message = item["msg"].removeprefix("Value error, ")
        return _error(item["type"], message, tuple(item["loc"]), item.get("input"))
    unknown = str(item["loc"][0])
    owners = [other for other in registry.names() if unknown in registry.get(other).model_fields]
    applies = ", ".join(k for k in cls.model_fields if k != key) or "none besides " + key
    if owners:
        hint = f"it is a setting of {what} {', '.join(owners)}; remove it, or set {section}.{key} to one of those"
    else:
        everywhere = {k for other in registry.names() for k in registry.get(other).model_fields}
        close = difflib.get_close_matches(unknown, sorted(everywhere), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
    message = f"not a setting of {what} {name} ({hint}); {name}'s settings are: {applies}"
    return _error("not_a_setting", message, (unknown,), item.get("input"))
