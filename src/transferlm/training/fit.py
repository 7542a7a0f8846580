"""Drive the loop: evaluation schedule, best checkpoint, early stopping, resumable checkpoints, logs."""

from __future__ import annotations

import functools
import logging
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlm.config.schema import TrainConfig
from transferlm.tasks.base import Features
from transferlm.tracking import Tracking
from transferlm.training.callbacks import JsonlLog, Progress, Throughput, scalar_metrics
from transferlm.training.checkpoint import load_weights, save_weights
from transferlm.training.loop import StepResult, TrainingLoop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"


@dataclass(frozen=True)
class FitSummary:
    steps: int
    epochs_completed: int
    best_step: int | None
    best_metric: float | None
    metric: str
    validation: dict[str, Any]  # metrics of the restored best model
    train_samples_per_s: float
    train_seconds: float
    peak_rss_mb: float
    stopped_early: bool
    pruned: bool = False  # stopped by ``on_evaluate`` (a tuner's pruner), not by patience


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@functools.lru_cache(maxsize=8)  # asked after every optimizer step
def evaluation_steps(total_steps: int, evaluations: int) -> frozenset[int]:
    """``train.evaluations``: the k-th evaluation at step round(k * total / n), so that two runs of different
    lengths evaluate at the same fractions of their budgets (a tuner's pruner compares trials there)."""
    return frozenset(max(1, round(k * total_steps / evaluations)) for k in range(1, evaluations + 1))


class Fitter:
    def __init__(self, loop: TrainingLoop, validation: Features, config: TrainConfig, paths: RunPaths, metric: str,
                 on_evaluate: Callable[[int, int, float], bool] | None = None, tracking: Tracking | None = None):
        """``on_evaluate(step, total_steps, value)`` sees each validation score; returning True stops training there
        (pruning). ``tracking``: the run's experiment trackers, fed every event of the JSONL log."""
        self.loop, self.validation, self.config, self.paths, self.metric = loop, validation, config, paths, metric
        self.on_evaluate = on_evaluate
        self.pruned = False
        self.main = loop.accelerator.is_main_process
        self.logs = [JsonlLog(paths.log, self.main)] + ([tracking] if tracking else [])
        self.throughput = Throughput()
        self.stopped_early = False

    def run(self, resume: bool = False) -> FitSummary:
        if resume:
            self.loop.resume(self.paths.last)
            self._record("resume", step=self.loop.state.step)
            log.info("resumed from step %d", self.loop.state.step)
        progress = Progress(self.loop.total_steps, self.loop.state.step, self.config.progress and self.main)
        try:
            for result in self.steps():
                progress.update(result, self.throughput.rate)
        finally:
            progress.close()
        return self._finish()

    def steps(self) -> Iterator[StepResult]:
        """The loop's steps with the bookkeeping applied; a caller may stop consuming at any point."""
        for result in self.loop.steps():
            self.throughput.add(result)
            if result.step % self.config.log_every == 0 or result.step == 1:
                self._record(
                    "train",
                    step=result.step,
                    epoch=result.epoch,
                    loss=round(result.loss, 6),
                    lr=result.lr,
                    samples_per_s=round(self.throughput.rate, 2),
                )
            evaluated = self._eval_due(result) and self._evaluate()
            if evaluated or (self.config.checkpoint_every and result.step % self.config.checkpoint_every == 0):
                self.loop.save(self.paths.last)
            yield result
            if self.stopped_early:
                return

    def _record(self, event: str, **fields: Any) -> None:
        for sink in self.logs:
            sink.write(event, **fields)

    def _eval_due(self, result: StepResult) -> bool:
        if self.loop.finished():
            return True
        if self.config.evaluations:
            return result.step in evaluation_steps(self.loop.total_steps, self.config.evaluations)
        if self.config.eval_every == "epoch":
            return result.epoch_finished
        return result.step % self.config.eval_every == 0

    def _evaluate(self) -> bool:
        state = self.loop.state
        metrics = self.loop.evaluate(self.validation)
        value = metrics[self.metric]
        better = self.loop.task.greater_is_better(self.metric)
        improved = state.best_metric is None or (value > state.best_metric if better else value < state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
            if self.main:
                save_weights(self.paths.best, self.loop.unwrapped)
        else:
            state.evals_without_improvement += 1
        self._record("eval", step=state.step, epoch=state.epoch, **scalar_metrics(metrics), improved=improved,
                     peak_rss_mb=round(peak_rss_mb(), 1))
        log.info("step %d: validation %s = %.4f%s", state.step, self.metric, value, " (best)" if improved else "")
        patience = self.config.early_stopping_patience
        if patience and state.evals_without_improvement >= patience:
            self.stopped_early = True
            log.info("early stopping: %d evaluations without improvement", patience)
        stop = self.on_evaluate is not None and self.on_evaluate(state.step, self.loop.total_steps, value)
        if stop and not self.loop.finished():
            self.stopped_early = self.pruned = True
            log.info("pruned at step %d: the tuner stops this trial", state.step)
        return True

    def _finish(self) -> FitSummary:
        self.loop.accelerator.wait_for_everyone()
        load_weights(self.paths.best, self.loop.unwrapped)
        state = self.loop.state
        validation = self.loop.evaluate(self.validation)
        summary = FitSummary(
            steps=state.step,
            epochs_completed=state.epoch,
            best_step=state.best_step,
            best_metric=state.best_metric,
            metric=self.metric,
            validation=validation,
            train_samples_per_s=round(self.throughput.rate, 2),
            train_seconds=round(self.throughput.seconds, 1),
            peak_rss_mb=round(peak_rss_mb(), 1),
            stopped_early=self.stopped_early,
            pruned=self.pruned,
        )
        self._record(
            "end",
            step=state.step,
            best_step=state.best_step,
            best_metric=state.best_metric,
            train_samples_per_s=summary.train_samples_per_s,
        )
        return summary
