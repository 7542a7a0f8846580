"""One experiment job, run as ``python -m transferlm.experiments.child job.json`` by ``jobs.run_job``."""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transferlm.config.load import build_config
from transferlm.config.schema import RunConfig
from transferlm.extras import require
from transferlm.training.checkpoint import atomic_write_text, restore_replaced


def _peak_memory() -> dict[str, float | None]:
    import torch

    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": None if gpu is None else round(gpu, 1),
    }


def train_job(config: RunConfig, trial: dict[str, Any] | None = None) -> dict[str, Any]:
    from transferlm.runs.train import train

    root = Path(config.output)
    restore_replaced(root / "checkpoints")  # a kill mid-checkpoint must not cost the checkpoint before it
    resume = (root / "checkpoints" / "last").is_dir()
    overwrite = root.exists() and not resume  # a run killed before its first checkpoint starts again
    pruner = _pruner(trial, config.train.evaluations or 100) if trial else None  # tune sets evaluations
    result = train(config, resume=resume, overwrite=overwrite, on_evaluate=pruner)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    training = metrics["training"]
    if result.test_example_scores is not None:
        scores = {"test": result.test_example_scores}
    else:  # a tune trial's scores are its validation figures alone: no pass for pairing
        scores = {} if trial else _example_scores(result.run_dir, config)
    return {
        "example_scores": scores,
        "metrics": {"validation": metrics["validation"], "test": metrics["test"]},
        "train_seconds": training["train_seconds"],
        "samples_per_s": training["train_samples_per_s"],
        "steps": training["steps"],
        "trainable": metrics["parameters"]["trainable"],
        "total": metrics["parameters"]["total"],
        "run_dir": str(result.run_dir),
        "feature_cache_seconds": training.get("feature_cache_seconds"),
        "pruned": training.get("pruned", False),
        "metric": result.summary.metric,
        "best_value": result.summary.best_metric,
    }


def _pruner(trial: dict[str, Any], evaluations: int):
    """Report each validation score to the tuner's trial (in its shared storage) and ask whether to stop."""
    from transferlm.experiments.tune import TUNE, make_pruner

    optuna = require("optuna", "tune", TUNE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=trial["study"], storage=trial["storage"], pruner=make_pruner(trial["pruner"]))
    handle = optuna.trial.Trial(study, trial["trial_id"])
    reported: set[int] = set()

    def on_evaluate(step: int, total_steps: int, value: float) -> bool:
        at = budget_point(step, total_steps, evaluations)
        if at not in reported:  # a second score at the same point would be ignored by the storage anyway
            handle.report(value, at)
            reported.add(at)
        return handle.should_prune()

    return on_evaluate


def budget_point(step: int, total_steps: int, evaluations: int) -> int:
    """Where a trial's score is reported to the pruner: the number of the evaluation, k of ``evaluations`` evenly
    spread ones (``training.fit.evaluation_steps``). Pruners compare trials at equal report steps; optimizer steps
    would set a batch-8 trial's 90th step (a fifth of its budget) against nothing, or a batch-32 trial's end."""
    return max(1, round(evaluations * step / max(total_steps, 1)))


def _example_scores(run_dir: Path, config: RunConfig) -> dict[str, list[float] | None]:
    """Per-example scores on the reported split, so the report can pair two members example by example."""
    from transferlm.runs.predictor import load

    predictor = load(run_dir)
    if config.data.test:
        return {"test": predictor.evaluate(config.data.test, per_example=True)["per_example"]}
    if config.data.validation:
        return {"validation": predictor.evaluate(config.data.validation, per_example=True)["per_example"]}
    # validation was carved from the training file: the same seeded split the run selected on
    from transferlm.runs.prepare import load_splits
    from transferlm.tasks import build_task

    splits = load_splits(config, build_task(config.task, config.data))
    scores = predictor.evaluate_records(splits.validation, per_example=True, source="validation split")
    return {"validation": scores["per_example"]}


def baseline_job(config: RunConfig, seed: int, name: str) -> dict[str, Any]:
    from transferlm.baselines import BASELINES, PRETRAINED
    from transferlm.runs.prepare import load_splits
    from transferlm.tasks import build_task

    task = build_task(config.task, config.data)
    splits = load_splits(config, task)
    evaluate = {"validation": splits.validation, **({"test": splits.test} if splits.test is not None else {})}
    result = BASELINES.get(name)(task, splits.train, evaluate, seed,
                                 **({"model": config.model.name} if name in PRETRAINED else {}))
    scores = {split: metrics.pop("per_example") for split, metrics in result.metrics.items()}
    return {
        "example_scores": scores,
        "metrics": {"validation": result.metrics["validation"], "test": result.metrics.get("test")},
        "train_seconds": result.train_seconds,
        "samples_per_s": round(len(splits.train) / max(result.train_seconds, 1e-9), 1),
        "trainable": result.parameters,
        "total": result.parameters,
        "chosen": result.chosen,
    }


def main(spec_path: str) -> int:
    logging.basicConfig(level=logging.INFO, format="transferlm: %(message)s", stream=sys.stderr)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec = json.loads(Path(spec_path).read_text())
    config = build_config(spec["config"])
    began = time.time()
    if spec["kind"] == "baseline":
        result = baseline_job(config, spec["seed"], spec["baseline"])
    else:
        result = train_job(config, spec.get("trial"))
    result.update(_peak_memory(), wall_seconds=round(time.time() - began, 1))
    atomic_write_text(Path(spec["result"]), json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
