"""`train`: config in, finished run directory out."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from transferlm.config.load import config_to_dict
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError, DataError, RegistryError
from transferlm.evaluation.report import write_reports
from transferlm.inference.batches import run_inference
from transferlm.models.load import load_tokenizer
from transferlm.models.resolve import copy_sentence_pooling, model_kind, resolve_model
from transferlm.runs import layout
from transferlm.runs.card import data_profile, interval, model_card
from transferlm.runs.lengths import report_cuts, resolve_max_length
from transferlm.runs.output import data_files, prepare_output
from transferlm.runs.prepare import load_splits
from transferlm.runs.recipes import auto_recipe
from transferlm.runs.task_settings import resolve_task_settings
from transferlm.strategies import build_strategy, count_parameters
from transferlm.strategies.base import LoopContext, TrainingInputs
from transferlm.tasks import build_task
from transferlm.tracking import STATE_FILE as TRACKING_STATE
from transferlm.tracking import (
    RunInfo,
    Tracking,
    check_trackers,
    child_name,
    flat_params,
    parent_refs,
    saved_refs,
    tracked,
)
from transferlm.training.callbacks import scalar_metrics
from transferlm.training.checkpoint import atomic_write_text
from transferlm.training.fit import FitSummary, Fitter, RunPaths
from transferlm.training.sampler import max_batch_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    summary: FitSummary
    test: dict[str, Any] | None
    # per-example scores on test (see ``Task.example_scores``), kept so that experiments need no second pass
    test_example_scores: list[float] | None = None


def _build_registered(config: RunConfig):
    problems = []
    try:
        task = build_task(config.task, config.data)
    except RegistryError as e:
        problems.append(f"task.type: {e}")
    try:
        strategy = build_strategy(config.strategy)
    except RegistryError as e:
        problems.append(f"strategy.name: {e}")
    if problems:
        raise ConfigError(problems)
    task.greater_is_better(config.train.metric or task.default_metric)  # an undeclared metric fails now, not later
    return task, strategy


def _saved(paths: RunPaths) -> dict[str, Any]:
    return yaml.safe_load((paths.root / layout.CONFIG).read_text())


def _with_train(config: RunConfig, **values: Any) -> RunConfig:
    """``config`` with these ``train`` settings replaced (auto values, resolved)."""
    return config.model_copy(update={"train": config.train.model_copy(update=values)})


def _final_metrics(model, task, summary: FitSummary, encoded: dict[str, Any], pad_id: int, device):
    """After training, on the restored best model: the task's calibration on validation (and the validation
    metrics under it), then the test split once. Returns the summary, calibration, test metrics and test
    per-example scores."""

    def outputs(features):
        return run_inference(model, task, features, pad_id, device=device)

    validation = encoded["validation"]
    calibration = task.calibrate(outputs(validation), validation) if task.calibrates else None
    if calibration:  # the validation metrics under the tuned settings (optimistic: tuned on the same data)
        summary = replace(summary, validation={**task.metrics(outputs(validation), validation),
                                               "calibrated_on_this_split": True})
    test = test_scores = None
    if encoded["test"] is not None:
        test_outputs = outputs(encoded["test"])
        test = task.metrics(test_outputs, encoded["test"])
        test_scores = task.example_scores(test_outputs, encoded["test"])
    return summary, calibration, test, test_scores


def _gradient_checkpointing(model) -> None:
    """Turn on activation recomputation in every Hugging Face model inside ``model`` (a task head or a peft
    wrapper around one)."""
    from transformers import PreTrainedModel

    found = [m for m in model.modules() if isinstance(m, PreTrainedModel) and m.supports_gradient_checkpointing]
    if not found:
        raise ConfigError(f"train.gradient_checkpointing: {type(model).__name__} does not support it; turn it off")
    for module in found:
        # Non-reentrant: works when the inputs need no gradient (frozen embeddings, LoRA).
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _model(config: RunConfig, task, strategy, resolved, tokenizer, device):
    """The task's model from the resolved checkpoint (or randomly initialised), as the strategy trains it."""
    pretrained = config.model.init == "pretrained"
    model = strategy.apply(task.build_model(resolved.path, tokenizer, pretrained=pretrained), task)
    if config.train.gradient_checkpointing:
        _gradient_checkpointing(model)
    params = count_parameters(model)
    log.info("model %s (%s%s) on %s; strategy %s; %s", config.model.name, resolved.source,
             "" if pretrained else ", randomly initialised", device, strategy.name, params.describe())
    return model, params


def train(config: RunConfig, resume: bool = False, overwrite: bool = False,
          on_evaluate: Callable[[int, int, float], bool] | None = None) -> TrainResult:
    """Train a run directory from ``config``. ``on_evaluate(step, total_steps, value)`` sees each validation score
    and may stop training by returning True (a tuner's pruner); the run still finishes with its best checkpoint."""
    from accelerate.utils import set_seed

    started = time.time()
    check_trackers(config.train.report_to)
    resolved = resolve_model(config.model.name)
    config, decided = resolve_task_settings(config, resolved.path)
    for setting in decided:
        log.info("%s: %s (%s)", setting.key, setting.value, setting.because)
    task, strategy = _build_registered(config)
    accelerator = _accelerator(config)
    if config.train.max_batch_tokens == "auto":
        tokens = max_batch_tokens(config.train, accelerator.device.type)
        log.info("train.max_batch_tokens auto: %s (on %s)", tokens or "no limit", accelerator.device.type)
        config = _with_train(config, max_batch_tokens=tokens)
    paths, resume = prepare_output(config, resume, overwrite, accelerator)
    splits = load_splits(config, task)
    set_seed(config.train.seed)
    tokenizer = load_tokenizer(resolved.path)
    recipe = auto_recipe(task.name, strategy, model_kind(resolved.path), len(splits.train))
    # a resumed run keeps the rate and batch it started with (its optimizer, schedule and data order were built so)
    for key, chosen in (("lr", recipe.lr), ("batch_size", recipe.batch_size)):
        if getattr(config.train, key) == "auto":
            value, why = (_saved(paths)["train"][key], "the interrupted run's") if resume else (chosen, recipe.why[key])
            log.info("train.%s auto: %g (%s)", key, value, why)
            config = _with_train(config, **{key: value})
    config = resolve_max_length(config, task, tokenizer, resolved.path, splits.train)
    encoded = _encode_splits(task, tokenizer, splits, config.model.max_length)  # bad input fails before training
    cuts = report_cuts(task, encoded, {"train": len(splits.train), "validation": len(splits.validation),
                                       "test": len(splits.test or [])}, config.model.max_length)
    profile = data_profile(task, splits, encoded, {"train": config.data.train, "validation": config.data.validation,
                                                   "test": config.data.test}, config.data.sources)
    model, params = _model(config, task, strategy, resolved, tokenizer, accelerator.device)
    config = config.model_copy(update={"strategy": strategy.resolved()})

    validation = encoded["validation"]
    context = LoopContext(accelerator.device, accelerator.autocast, tokenizer.pad_token_id,
                          max(64, config.train.batch_size), config.train.seed)
    inputs = strategy.training_inputs(TrainingInputs(model, task, encoded["train"], validation), context)
    from transferlm.training.loop import TrainingLoop

    loop = TrainingLoop(inputs.module, inputs.task, strategy, inputs.train, config.train, accelerator,
                        tokenizer.pad_token_id, recipe.budget)
    log.info("%d training %s, %d validation examples (%s); %d steps", len(inputs.train),
             inputs.task.unit_name, len(validation), splits.validation_source,
             loop.total_steps)
    if config.train.epochs == "auto":
        log.info("train.epochs auto: %g (%g epochs of %d steps, at least %d steps, at most %g epochs: %s)",
                 loop.epochs, recipe.budget.epochs, loop.steps_per_epoch, recipe.budget.min_steps,
                 recipe.budget.max_epochs, recipe.why["epochs"])
        config = _with_train(config, epochs=loop.epochs)
    if accelerator.is_main_process:
        paths.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(paths.root / layout.CONFIG, yaml.safe_dump(config_to_dict(config), sort_keys=False))
        if not resume:
            atomic_write_text(paths.root / layout.INPUTS, json.dumps(layout.input_files(data_files(config))))
    tracking = _open_tracking(config, paths, resume) if accelerator.is_main_process else Tracking([])
    with tracked(tracking):
        fitter = Fitter(loop, inputs.validation, config.train, paths, config.train.metric or task.default_metric,
                        on_evaluate, tracking)
        summary = fitter.run(resume=resume)
        notes = {**inputs.notes, **strategy.finish(inputs, context), **({"truncation": cuts} if cuts else {})}

        summary, calibration, test, test_scores = _final_metrics(model, task, summary, encoded,
                                                                 tokenizer.pad_token_id, accelerator.device)
        if accelerator.is_main_process:
            notes = {**notes, **({"calibration": calibration} if calibration else {})}
            run = _Finished(config, task, strategy, model, tokenizer, summary, test, params, resolved, started, notes,
                            profile, test_scores)
            _write_run(paths, run)
            _track_result(tracking, paths.root, summary, test, params)
        accelerator.wait_for_everyone()
    return TrainResult(paths.root, summary, test, test_scores)


def _open_tracking(config: RunConfig, paths: RunPaths, resume: bool) -> Tracking:
    """The run's trackers (``train.report_to``), continuing the same tracker runs when training resumes."""
    if not config.train.report_to:
        return Tracking([])
    parents = parent_refs()
    name = child_name(paths.root, next(iter(parents.values()), None))
    info = RunInfo(name, paths.root, "train", flat_params(config_to_dict(config)))
    tracking = Tracking.open(config.train.report_to, info, parents, saved_refs(paths.root) if resume else None)
    atomic_write_text(paths.root / TRACKING_STATE, json.dumps(tracking.refs, indent=2))
    log.info("tracking in %s", ", ".join(f"{k} ({v})" for k, v in tracking.refs.items()))
    return tracking


def _track_result(tracking: Tracking, root: Path, summary: FitSummary, test: dict[str, Any] | None, params) -> None:
    """The finished run's figures and reports, at its last step."""
    if not tracking:
        return
    figures = {f"{split}/{k}": v for split, metrics in (("validation", summary.validation), ("test", test or {}))
               for k, v in scalar_metrics(metrics).items() if not isinstance(v, bool)}
    figures |= {"system/train_samples_per_s": summary.train_samples_per_s,
                "system/train_seconds": summary.train_seconds, "system/peak_rss_mb": summary.peak_rss_mb,
                "parameters/trainable": params.trainable, "parameters/total": params.total}
    tracking.log_metrics({k: float(v) for k, v in figures.items()}, summary.steps)
    reports = sorted(root.glob("*_confusion.*"))
    tracking.log_artifacts([root / layout.METRICS, root / layout.CONFIG, root / layout.MANIFEST,
                            root / layout.MODEL_CARD, *reports])


def _encode_splits(task, tokenizer, splits, max_length: int) -> dict[str, Any]:
    """Every split as model-ready features. Problems found while encoding are fatal in train (it would
    teach the model something wrong) and warnings elsewhere (those examples are still scored)."""
    encoded: dict[str, Any] = {}
    for name, records in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        encoded[name] = None if records is None else task.encode(tokenizer, records, max_length)
        if encoded[name] is None:
            continue
        problems = [p.replace("input:", f"{name}:", 1) for p in encoded[name].problems]
        if name == "train" and problems:
            raise DataError(problems)
        for problem in problems:
            log.warning(problem)
    return encoded


def _accelerator(config: RunConfig):
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    # accelerate keeps precision settings process-wide and refuses a second Accelerator that differs
    # (e.g. a bf16 run after an fp32 one in the same notebook or search). Reset that part only; the
    # distributed state (process group) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    if config.train.bf16 and not torch.cuda.is_available() and not _native_cpu_bf16():
        log.warning("train.bf16 on a CPU without native bfloat16 (AVX512-BF16 or AMX): autocast is emulated and "
                    "slow (SmolLM2 LoRA: 30x slower than fp32 on an AVX2 CPU); turn train.bf16 off here")
    # Gradual unfreezing leaves parameters without gradients in early epochs, which DDP must be told of.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=getattr(config.strategy, "gradual_unfreeze", False))
    # cpu=True is what makes accelerate join a gloo process group under torchrun on a CPU-only
    # machine; without it each process trains alone. The device is logged by train().
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="bf16" if config.train.bf16 else "no",
                       kwargs_handlers=[ddp])


def _native_cpu_bf16() -> bool:
    import torch

    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private, hence the guard
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check()) or bool(amx and amx())


@dataclass(frozen=True)
class _Finished:
    config: RunConfig
    task: Any
    strategy: Any
    model: Any
    tokenizer: Any
    summary: FitSummary
    test: dict[str, Any] | None
    params: Any
    resolved: Any
    started: float
    notes: dict[str, Any]
    data: dict[str, Any]  # runs.card.data_profile
    test_scores: list[float] | None


def _write_run(paths: RunPaths, run: _Finished) -> None:
    root = paths.root
    run.strategy.save(run.model, run.task, root)
    run.tokenizer.save_pretrained(root)
    if (run.task.continues_checkpoint and run.config.model.init == "pretrained"
            and copy_sentence_pooling(run.resolved.path, root)):
        log.info("%s keeps %s's sentence-transformers pooling (mean): tasks on it read it as that model was read",
                 root, run.config.model.name)
    atomic_write_text(root / layout.TASK_STATE, json.dumps(run.task.state(), indent=2))
    training = {k: v for k, v in asdict(run.summary).items() if k != "validation"}
    metrics = {"validation": run.summary.validation, "test": run.test, "training": {**training, **run.notes},
               "parameters": {"trainable": run.params.trainable, "total": run.params.total}, "data": run.data}
    # the per-example scores stand for one metric (accuracy, exact match): the first the mean of the scores equals
    # (with a perfect model, f1_macro equals it too and is not such a mean)
    banded = next(((k, band) for k, v in (run.test or {}).items() if isinstance(v, float)
                   and (band := interval(run.test_scores, v))), None)
    if banded:
        metrics["intervals"] = {"test": {banded[0]: banded[1]}}
    atomic_write_text(root / layout.METRICS, json.dumps(metrics, indent=2))
    atomic_write_text(root / layout.VERSIONS, json.dumps(layout.library_versions(), indent=2))
    write_reports(run.summary.validation, root, "validation")
    if run.test:
        write_reports(run.test, root, "test")
    shutil.rmtree(root / "checkpoints", ignore_errors=True)  # the best weights are now the model itself
    manifest = {"format_version": layout.FORMAT_VERSION, "task": run.task.name, "strategy": run.config.strategy.name,
                "model": run.config.model.name, "model_source": run.resolved.source,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "wall_seconds": round(time.time() - run.started, 1)}
    try:
        atomic_write_text(root / layout.MODEL_CARD, model_card(root, manifest))
    except Exception as e:  # noqa: BLE001 - the card describes the model; it must never cost the training
        log.warning("the model card could not be written (%s: %s); `transferlm card %s` writes it", type(e).__name__,
                    e, root)
    atomic_write_text(root / layout.MANIFEST, json.dumps(manifest, indent=2))  # last: the run is now complete
