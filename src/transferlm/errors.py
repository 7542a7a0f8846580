"""Typed errors. Library code raises these; only the CLI prints them."""

from __future__ import annotations


class TransferLMError(Exception):
    """Base class. ``problems`` holds one line per problem, each naming what and how to fix."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(TransferLMError):
    """The user's configuration is invalid."""


class DataError(TransferLMError):
    """An input data file cannot be used as given."""


class ModelSpecError(TransferLMError):
    """A model spec resolves to nothing usable."""


class RunDirError(TransferLMError):
    """A run directory is missing, incomplete or from an incompatible version."""


class RegistryError(TransferLMError):
    """An unknown name was looked up in a registry."""


class ExperimentError(TransferLMError):
    """Some runs of an experiment (compare, curve) failed; the report covers the others."""


class ExportError(TransferLMError):
    """A model cannot be exported faithfully, or the export was asked for wrongly."""


class MissingExtraError(TransferLMError):
    """An optional part is used without its packages; the message names the extra that installs them."""


class PushError(TransferLMError):
    """A run cannot be uploaded to the Hub: offline, no token, or not a finished run."""
