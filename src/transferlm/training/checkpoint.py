"""Resumable checkpoints, written atomically: a temp directory renamed into place."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from transferlm.errors import RunDirError

WEIGHTS = "model.safetensors"


@dataclass
class TrainState:
    """Where training is: saved with each checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0  # global batches consumed in the current epoch
    samples_seen: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir; on success it replaces ``target`` in one rename, so a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def restore_replaced(directory: Path) -> None:
    """Finish the replacements ``atomic_dir`` left half done: a process killed between its two renames leaves the
    previous directory as ``.NAME.old`` and no ``NAME``; that previous directory is whole, so it goes back. The
    half-written ``.NAME.tmp-*`` directories of killed saves are removed. Call it before anything writes there."""
    if not directory.is_dir():
        return
    for old in directory.glob(".*.old"):
        target = old.with_name(old.name[1:-len(".old")])
        if old.is_dir() and not target.exists():
            os.replace(old, target)
    for partial in directory.glob(".*.tmp-*"):
        shutil.rmtree(partial, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report or config should read like any written file
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler, state: TrainState) -> None:
    with atomic_dir(path) as tmp:
        save_model(model, str(tmp / WEIGHTS))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
            tmp / "training_state.pt",
        )
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> TrainState:
    if not (path / "state.json").is_file():
        raise RunDirError(f"{path}: no resumable checkpoint here; start without --resume")
    load_model(model, str(path / WEIGHTS))
    # weights_only=False: the RNG states hold numpy objects; this file is one we wrote ourselves.
    extra = torch.load(path / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(extra["rng"])
    return TrainState(**json.loads((path / "state.json").read_text()))


def save_weights(path: Path, model: torch.nn.Module) -> None:
    with atomic_dir(path) as tmp:
        save_model(model, str(tmp / WEIGHTS))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    load_model(model, str(path / WEIGHTS))
