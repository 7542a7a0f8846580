"""Optional parts of transferlm (the extras in pyproject.toml) import their packages when used, through ``require``,
so that a missing one is a ``MissingExtraError`` naming the extra to install, not an ImportError from inside a
command."""

from __future__ import annotations

import importlib
from types import ModuleType

from transferlm.errors import MissingExtraError


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``module``, imported for ``feature`` (e.g. "`transferlm export`"); the extra ``extra`` installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise  # the package is there but something it needs is not: its own error says what
        raise MissingExtraError(f"{feature} needs {e.name}: pip install 'transferlm[{extra}]'") from e
