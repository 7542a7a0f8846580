"""Consumers of the loop's steps: progress bar and JSONL metrics log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from transferlm.training.loop import StepResult


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


class JsonlLog:
    """Appends one JSON object per event; appending keeps the history of a resumed run."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")


class Throughput:
    """Training samples per second, excluding evaluation and checkpoint time."""

    def __init__(self):
        self.samples, self.seconds = 0, 0.0

    def add(self, result: StepResult) -> None:
        self.samples += result.samples
        self.seconds += result.seconds

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


def interactive() -> bool:
    """A terminal, or a Jupyter kernel (whose stderr is no terminal but shows tqdm.auto's widget)."""
    if sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class Progress:
    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled and interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update(self, result: StepResult, rate: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{result.loss:.4f}", samples_s=f"{rate:.1f}", epoch=result.epoch, refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
