"""The run directory: what a finished run holds, and how it is told apart from an unfinished one.

A run directory is a plain Hugging Face model directory (config.json, model.safetensors,
tokenizer) plus transferlm's own files. ``run.json`` is written last: without it the
directory is an unfinished run, never mistaken for a complete artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from transferlm.errors import RunDirError

FORMAT_VERSION = 1
MANIFEST = "run.json"
CONFIG = "transferlm.yaml"
TASK_STATE = "labels.json"
METRICS = "metrics.json"
VERSIONS = "versions.json"
MODEL_CARD = "README.md"
INPUTS = "inputs.json"  # a digest of each data file when training started: a resume checks them


def input_files(paths: list[str | None]) -> dict[str, str]:
    """A content digest of each data file (a file that changes between the two halves of a run would mix two data
    sets in one model). Content, not times: experiments write identical split files again when they rerun."""
    found = {}
    for path in filter(None, paths):
        digest = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError:  # not a local file (e.g. a hub data set): nothing to compare
            continue
        found[str(path)] = digest.hexdigest()
    return found


def changed_inputs(root: Path, paths: list[str | None]) -> list[str]:
    """The data files that differ from what the run in ``root`` started with (none when it recorded nothing)."""
    try:
        saved = json.loads((Path(root) / INPUTS).read_text())
    except (OSError, ValueError):
        return []
    now = input_files(paths)
    return sorted(name for name in set(saved) | set(now) if saved.get(name) != now.get(name))


def is_complete(root: Path) -> bool:
    return (root / MANIFEST).is_file()


def read_manifest(root: Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root}: no such run directory; pass the --output directory of a `transferlm train` run")
    if not is_complete(root):
        hint = (" Its training was interrupted: resume it with `transferlm train --resume --output " f"{root}`."
                if (root / "checkpoints" / "last").is_dir() else "")
        raise RunDirError(f"{root}: not a finished transferlm run (no {MANIFEST}).{hint}")
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise RunDirError(
            f"{root}: written by a newer transferlm (format {manifest['format_version']}); upgrade transferlm"
        )
    return manifest


def library_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("transferlm", "torch", "transformers", "accelerate", "tokenizers", "safetensors", "peft",
                 "scikit-learn", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
