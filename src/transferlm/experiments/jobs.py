"""The runs of an experiment: one job per member, seed (and curve size), each in its own process.

A process per run gives every run its own peak-memory figure and keeps one failing member from taking
the others down. Each job writes ``result.json`` atomically when it finishes, so an interrupted
experiment re-run with the same config skips what is done and resumes a half-trained run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from transferlm.config.load import build_config, config_to_dict, set_dotted
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError, Terminated
from transferlm.experiments.config import BASELINE_NAMES, MemberConfig
from transferlm.experiments.splits import SplitFiles, read_back
from transferlm.strategies import STRATEGIES
from transferlm.tasks.base import Task
from transferlm.tracking import Tracking, parent_run
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

RESULT = "result.json"
REPORT_FILES = ("report.md", "report.html", "report.json", "chart.png", "curve.csv", "curve.png", "trials.csv",
                "best.yaml")


@contextmanager
def tracked_experiment(config: RunConfig, kind: str, settings: BaseModel) -> Iterator[Tracking]:
    """A parent run in each of ``train.report_to``'s trackers for the experiment: its runs (child processes) nest
    under it, and its reports are logged to it as it ends, also when some runs failed."""
    params = {**config_to_dict(config), kind: settings.model_dump(mode="json")}
    out = Path(config.output)
    with parent_run(config.train.report_to, out, kind, params) as tracking:
        try:
            yield tracking
        finally:
            tracking.log_artifacts([out / name for name in REPORT_FILES])


@dataclass(frozen=True)
class Job:
    member: MemberConfig
    seed: int
    dir: Path
    train_file: Path
    n_train: int
    size: int | str | None = None  # examples per class (curve only)

    @property
    def describe(self) -> str:
        per_class = "all" if self.size == "all" else f"{self.size} per class"
        size = "" if self.size is None else f", {per_class}: {self.n_train} examples"
        return f"{self.member.title} (seed {self.seed}{size})"


def check_members(members: list[MemberConfig], task: Task) -> None:
    valid = sorted(STRATEGIES.names()) + list(BASELINE_NAMES)
    unknown = [m.name for m in members if m.name not in valid]
    if unknown:
        raise ConfigError(
            f"members: unknown {', '.join(map(repr, unknown))}; choose from strategies "
            f"{', '.join(STRATEGIES.names())} or baselines {', '.join(BASELINE_NAMES)}"
        )
    applies = (*task.baselines, "scratch")
    wrong = [m.name for m in members if m.is_baseline and m.name not in applies]
    if wrong:
        raise ConfigError(
            f"members: baseline {', '.join(map(repr, wrong))} does not apply to task {task.name}; its baselines "
            f"are {', '.join(applies)}"
        )


def is_fitted_baseline(member: MemberConfig) -> bool:
    """A baseline fitted by its own code (tfidf, crf) rather than trained by the loop (scratch)."""
    return member.is_baseline and member.name != "scratch"


def job_config(base: RunConfig, job: Job, files: SplitFiles, train_overrides: dict[str, Any]) -> RunConfig:
    """The run config of one job: the shared settings, this member's strategy and overrides, the split files."""
    data = config_to_dict(base)
    read_back(data, job.train_file, files)
    # A baseline's run config holds the shared settings (a fitted baseline reads the data and task from it);
    # scratch trains the whole randomly initialised model.
    data["strategy"] = {"name": "full" if job.member.is_baseline else job.member.name}
    if job.member.name == "scratch":
        data["model"]["init"] = "random"
    data["train"].update({"seed": job.seed, "progress": False, **train_overrides})
    data["output"] = str(job.dir / "run")
    for key, value in job.member.set.items():
        set_dotted(data, key, value)
    try:
        return build_config(data)
    except ConfigError as e:
        raise ConfigError([f"member {job.member.title}: {p}" for p in e.problems]) from e


def write_job_spec(job: Job, config: RunConfig, trial: dict[str, Any] | None = None) -> Path:
    spec = {
        "kind": "baseline" if is_fitted_baseline(job.member) else "train",
        "baseline": job.member.name,
        "config": config_to_dict(config),
        "seed": job.seed,
        "result": str(job.dir / RESULT),
        **({"trial": trial} if trial else {}),  # a tuner's trial: storage, study and id, for pruning
    }
    path = job.dir / "job.json"
    atomic_write_text(path, json.dumps(spec, indent=2, default=str))
    return path


def run_job(job: Job, config: RunConfig, trial: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one job in a child process (or reuse its finished result); the result, or {"error": ...}."""
    done = job.dir / RESULT
    if done.is_file():
        log.info("%s: finished earlier, reusing %s", job.describe, done)
        return json.loads(done.read_text())
    spec = write_job_spec(job, config, trial)
    log_path = job.dir / "log.txt"
    began = time.time()
    code = run_child([sys.executable, "-m", "transferlm.experiments.child", str(spec)], log_path)
    if code != 0 or not done.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-12:]
        if code in (-2, 130):
            raise KeyboardInterrupt
        log.error("%s failed (exit %s); log: %s", job.describe, code, log_path)
        return {"error": f"exit {code}; see {log_path}", "log_tail": tail}
    result = json.loads(done.read_text())
    log.info("%s: %.1f s", job.describe, time.time() - began)
    return result


def run_child(command: list[str], log_path: Path, grace: float = 30.0) -> int:
    """Run ``command`` with its output appended to ``log_path``; its exit code. If this process is interrupted
    meanwhile (Ctrl-C, or SIGTERM, which raises `Terminated` here instead of ending the process on the spot), the
    child is stopped before the interrupt goes on: SIGTERM, then SIGKILL after ``grace`` seconds. Left running, it
    would train on unseen, and a resumed experiment would start a second process on the same run directory. A
    child killed mid-checkpoint keeps the checkpoint before (``train_job`` restores it), so the resumed job loses
    at most the steps since then."""
    handled = threading.current_thread() is threading.main_thread()  # Python sets handlers there only
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handled else None
    try:
        with log_path.open("a", encoding="utf-8") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                return child.wait()
            except BaseException:
                _stop(child, grace)
                raise
    finally:
        if handled:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _stop(child: subprocess.Popen, grace: float) -> None:
    log.warning("stopping the job's process %d", child.pid)
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
