"""Typed errors. Library code raises these; only the CLI prints them."""

from __future__ import annotations

import errno


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt while an experiment waits on a job's process, so that the process is
    stopped with it (`experiments.jobs.run_child`) and the CLI exits as killed by SIGTERM (143)."""


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


class DiskFullError(TransferLMError):
    """The disk ran out of space while writing; the message names the file and what to do."""


def disk_full(error: BaseException) -> OSError | None:
    """The ``ENOSPC`` error (no space left on device) in ``error``'s chain of causes, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        current = current.__cause__ or current.__context__
    return None


def disk_full_problem(error: OSError, where: object = None) -> str:
    """One line for a full disk: ``where`` (the output the user named) or else the file being written, and the fix."""
    target = where or error.filename or "the output"
    return (f"no space left on the disk holding {target}: free some space there or write to another disk "
            f"(--output), then run the same command again")
