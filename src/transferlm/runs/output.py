"""Where a run writes: whether ``--output`` is cleared, resumed or refused (``check_output``), and preparing it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from transferlm.config.load import config_to_dict
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError, RunDirError
from transferlm.runs import layout
from transferlm.training.checkpoint import restore_replaced
from transferlm.training.fit import RunPaths

log = logging.getLogger(__name__)


def check_output(config: RunConfig, resume: bool, overwrite: bool) -> tuple[RunPaths, bool, bool]:
    """Validate --output against --resume/--overwrite; return the paths, whether it must be cleared and whether
    the run resumes. The same command again resumes by itself: an interrupted run whose saved config equals this
    one continues from its last checkpoint (a different config still needs --overwrite or another --output).

    Read-only, so every process can run it and fail the same way (no rank left waiting)."""
    paths = RunPaths(Path(config.output))
    root = paths.root
    interrupted = paths.last.is_dir() and not layout.is_complete(root)
    if resume or (interrupted and not overwrite):
        if not paths.last.is_dir():
            raise RunDirError(f"{root}: nothing to resume (no checkpoints/last); start without --resume")
        saved = yaml.safe_load((root / layout.CONFIG).read_text())
        differences = _config_differences(saved, config_to_dict(config))
        if differences:
            raise ConfigError(
                [
                    f"{key}: differs from the interrupted run in {root} ({old!r} there, {new!r} now); resume with "
                    "the same config, pass --overwrite to start over, or choose another --output"
                    for key, old, new in differences
                ]
            )
        changed = layout.changed_inputs(root, data_files(config))
        if changed:
            raise ConfigError([f"{name}: changed since the interrupted run in {root} started (its contents differ); "
                               "pass --overwrite to start over on it, or restore the file" for name in changed])
        if not resume:
            log.warning("%s holds an interrupted run of this same config: continuing it from its last checkpoint "
                        "(--overwrite starts over)", root)
        return paths, False, True
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            state = "a finished run" if layout.is_complete(root) else "other files"
            raise RunDirError(f"{root}: already holds {state}; choose another --output or pass --overwrite")
        return paths, True, False
    return paths, False, False


def data_files(config: RunConfig) -> list[str | None]:
    return [config.data.train, config.data.validation, config.data.test]


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    # display and bookkeeping only: free to change between the two halves of a run
    ignored = {"train.progress", "train.report_to"}
    # null or auto means "the default", saved resolved
    resolved_later = {"strategy.target_modules", "train.epochs", "train.lr", "train.batch_size", "model.max_length",
                      "train.max_batch_tokens"}
    found = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if key not in old and b in (None, [], {}):
            continue  # a setting added since the run was interrupted, at its empty default
        if isinstance(a, dict) and isinstance(b, dict):
            found += _config_differences(a, b, f"{name}.")
        elif a != b and name not in ignored and not (b in (None, "auto") and name in resolved_later):
            found.append((name, a, b))
    return found


def prepare_output(config: RunConfig, resume: bool, overwrite: bool, accelerator) -> tuple[RunPaths, bool]:
    """The run directory's paths, cleared first where the run overwrites it, and whether the run resumes."""
    if accelerator.is_main_process:  # a kill mid-checkpoint must not cost the checkpoint before it
        restore_replaced(Path(config.output) / "checkpoints")
    accelerator.wait_for_everyone()
    paths, clear, resume = check_output(config, resume, overwrite)
    accelerator.wait_for_everyone()  # every process has seen the directory before the main one clears it
    if clear and accelerator.is_main_process:
        shutil.rmtree(paths.root)
    return paths, resume
