"""``transferlm auto``: what a careful practitioner would do with a data file, each step explained.

1. Profile: infer the task from the file (``experiments/profile.py``) and describe the training data.
2. Choose: the model (``rank``, when several candidates are given), the strategy, class weights, and the budget,
   from a timed training step and the recipe's epochs (``runs/recipes.py``), cut to fit ``--time-budget``;
   optionally a short ``tune`` when the budget holds several runs.
3. Train and ``compare`` against the task's no-transfer baseline in one experiment, so negative transfer shows.
4. Report: auto-report.md/.html/.json with every choice and its evidence, the result beside the baseline, and the
   ``transferlm train`` line that re-creates the trained run with explicit flags.

``--dry-run`` stops after step 2 and trains nothing. Settings the user gives are kept, never overridden: the plan
says so for each.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transferlm.config.load import build_config, config_to_dict, read_yaml, set_dotted
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError
from transferlm.experiments.auto_choices import (
    Choice,
    Plan,
    choose_budget,
    choose_length,
    choose_model,
    choose_strategy,
    choose_task_settings,
    choose_weights,
    explain_recipe,
    given,
    parse_budget,
)
from transferlm.experiments.auto_report import write_report
from transferlm.experiments.config import AutoSettings, CompareSettings, MemberConfig, TuneSettings
from transferlm.experiments.profile import Inferred, infer_task, profile

log = logging.getLogger(__name__)

TUNE_RUNS = 5  # a tune is planned only when the budget holds this many runs


def initial_config(raw: dict[str, Any]) -> tuple[RunConfig, Inferred]:
    """The run config with the task inferred and columns guessed where the user named none."""
    data = raw.get("data") or {}
    if not data.get("train"):
        raise ConfigError("auto: --train FILE is required: the labelled data to learn from")
    given_task = (raw.get("task") or {}).get("type")
    inferred = (Inferred(given_task, f"task.type {given_task} (given)") if given_task
                else infer_task(Path(data["train"]), data))
    if inferred.task == "adapt":
        raise ConfigError(f"auto: {inferred.evidence}. auto plans supervised tasks; adapt a model to this text with "
                          f"`transferlm adapt --train {data['train']} --output DIR`, then pass DIR as --model to "
                          "auto or train on labelled data")
    config = json.loads(json.dumps(raw, default=str))
    set_dotted(config, "task.type", inferred.task)
    for key, value in inferred.columns.items():
        set_dotted(config, f"data.{key}", value)
    for key in inferred.task_settings:
        if not given(raw, f"task.{key}"):
            set_dotted(config, f"task.{key}", value)
    config.setdefault("output", str(Path("runs") / f"auto-{Path(data['train']).stem}"))
    return build_config(config), inferred


def plan(raw: dict[str, Any], settings: AutoSettings) -> Plan:
    """Steps 1 and 2: profile and choose (nothing is trained; ranking runs frozen features only)."""
    from transferlm.models.load import load_tokenizer
    from transferlm.models.resolve import resolve_model
    from transferlm.runs.prepare import load_splits
    from transferlm.tasks import build_task

    started = time.time()
    config, inferred = initial_config(raw)
    task = build_task(config.task, config.data)
    splits = load_splits(config, task)
    chosen = Plan(task.name, inferred.evidence, {})
    for key, value in inferred.columns.items():
        chosen.choices.append(Choice(f"data.{key}", value, f"guessed from the file's columns ({inferred.evidence})"))
    for key in inferred.task_settings:
        chosen.choices.append(Choice(f"task.{key}", getattr(config.task, key), inferred.evidence,
                                     given(raw, f"task.{key}")))
    config = choose_model(config, raw, settings, chosen)
    resolved = resolve_model(config.model.name)
    tokenizer = load_tokenizer(resolved.path)
    chosen.profile = profile(task, splits.train, tokenizer)
    chosen.profile["validation"] = {"examples": len(splits.validation), "source": splits.validation_source}
    config = choose_strategy(config, raw, chosen, resolved.path)
    config = choose_task_settings(config, chosen, resolved.path)
    task = build_task(config.task, config.data)  # as it trains: a bi-encoder's inputs are its texts, one by one
    config = choose_length(config, raw, chosen, task, tokenizer, resolved.path, splits.train)
    config = choose_weights(config, raw, chosen)
    explain_recipe(config, raw, chosen, len(splits.train))
    config = choose_budget(config, raw, settings, chosen, splits, resolved.path, time.time() - started)
    chosen.config = config_to_dict(config)
    return chosen


def auto(raw: dict[str, Any], settings: AutoSettings, overwrite: bool = False) -> dict[str, Any]:
    """Plan, and unless ``settings.dry_run``, tune (optional), train and compare; returns the report (also written
    to auto-report.json/.md/.html in the output directory). The plan is saved first (auto-plan.json): re-running
    the same command after an interruption reuses it and continues the comparison; ``overwrite`` starts afresh."""
    started = time.time()
    inputs = json.loads(json.dumps({"config": raw, "settings": settings.model_dump(mode="json", exclude={"dry_run"})},
                                   default=str))
    out = Path(initial_config(raw)[0].output)
    saved = out / "auto-plan.json"
    previous = json.loads(saved.read_text()) if saved.is_file() and not overwrite else None
    if previous and previous.get("inputs") == inputs and not previous.get("dry_run") and not settings.dry_run:
        log.info("auto: continuing the plan in %s (pass --overwrite to plan afresh)", saved)
        report = {**previous, "dry_run": False}
    else:
        report = {"inputs": inputs, "plan": _plan_json(plan(raw, settings)), "dry_run": settings.dry_run}
        out.mkdir(parents=True, exist_ok=True)
        write_report(out, report, "auto-plan")
    if settings.dry_run:
        return report
    chosen = report["plan"]
    config = build_config(chosen["config"])
    overrides = _member_overrides(chosen["choices"])
    if settings.tune:
        overrides.update(_tune(config, raw, chosen, settings, overrides, started))
    report["result"] = _train_and_compare(config, overrides, overwrite)
    report["wall_seconds"] = round(time.time() - started, 1)
    write_report(out, report, "auto-report")
    return report


def _member_overrides(choices: list[dict[str, Any]]) -> dict[str, Any]:
    """The planned settings the trained member sets (the rest of the plan is in the shared config)."""
    keys = ("train.max_steps", "task.class_weights", "task.pooling", "task.pair_encoding", "task.long_inputs")
    return {c["key"]: c["value"] for c in choices if c["key"] in keys and not c["given"]}


def _tune(config: RunConfig, raw: dict, chosen: dict[str, Any], settings: AutoSettings, overrides: dict,
          started: float) -> dict:
    from transferlm.experiments.tune import default_space, tune, with_trial_schedule

    budget = parse_budget(settings.time_budget) - (time.time() - started)
    run = chosen["estimate"]["seconds"]
    if budget < TUNE_RUNS * run:
        chosen["choices"].append(_choice("tune", "skipped", f"one run takes about {run / 60:.1f} minutes; the "
                                     f"{budget / 60:.0f} minutes left hold fewer than {TUNE_RUNS} runs"))
        return {}
    trials = min(20, int(0.6 * budget / run))
    data = {**config_to_dict(config), "output": str(Path(config.output) / "tune")}
    for key, value in overrides.items():
        set_dotted(data, key, value)
    # Settings the user gave stay fixed; so does the batch size, at which the budget's step was timed.
    space = {key: spec for key, spec in default_space(config.strategy.name).items()
             if key != "train.batch_size" and not given(raw, key)}
    if not space:
        chosen["choices"].append(_choice("tune", "skipped", "every setting of the search space was given"))
        return {}
    tuning = TuneSettings(trials=trials, timeout=0.6 * budget, space=space)
    report = tune(build_config(data), tuning)
    params = report["best"]["params"]
    # trained with the trials' evaluation schedule, the best trial's settings keep their checkpoint as it did
    schedule = with_trial_schedule(data, tuning)["train"]["evaluations"]
    chosen["choices"].append(_choice("tune", params, f"{trials} trials planned in 60 % of the {budget / 60:.0f} "
                                 f"minutes left; best validation {report['best']['validation']:.4f}; trained "
                                 f"evaluating {schedule} times, as each trial did"))
    return {**params, "train.evaluations": schedule}


def _choice(key: str, value: Any, why: str) -> dict[str, Any]:
    return asdict(Choice(key, value, why))


def _train_and_compare(config: RunConfig, overrides: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """The planned run as a member of ``compare`` beside the task's baselines (one seed), and the line that
    re-creates the trained run."""
    from transferlm.config.flags import command_line
    from transferlm.config.selected import strategy_settings
    from transferlm.experiments.compare import compare
    from transferlm.tasks import build_task

    task = build_task(config.task, config.data)
    name = config.strategy.name
    # compare's members choose the strategy: its settings (those that differ from the defaults) go in the member
    defaults = strategy_settings(name=name).model_dump(mode="json")
    own = {f"strategy.{k}": v for k, v in config.strategy.model_dump(mode="json").items()
           if k != "name" and v != defaults.get(k)}
    member = MemberConfig(name=name, label=f"auto ({name})", set={**own, **overrides})
    from transferlm.baselines import PRETRAINED

    # the strongest baseline without transfer (the task lists it last), and the pretrained model used as it is
    own = [b for b in task.baselines if b not in PRETRAINED]
    baselines = [MemberConfig(name=b) for b in own[-1:] + [b for b in task.baselines if b in PRETRAINED]]
    compared = config.model_copy(update={"output": str(Path(config.output) / "compare"),
                                         "strategy": strategy_settings()})
    report = compare(compared, CompareSettings(members=[member, *baselines], seeds=[config.train.seed]),
                     overwrite=overwrite)
    rows = {row["title"]: row for row in report["members"]}
    run_dir = Path(rows[member.title]["runs"][0]["run_dir"])
    saved = build_config(read_yaml(run_dir / "transferlm.yaml"))
    return {"metric": report["metric"], "split": report["split"], "run_dir": str(run_dir),
            "members": {title: {"value": (row.get("summary") or {}).get("mean"), "kind": row["kind"],
                                "verdict": (row.get("verdict") or {}).get("words")} for title, row in rows.items()},
            "negative_transfer": report["negative_transfer"], "best_baseline": report.get("best_baseline"),
            "reproduce": shlex.join(command_line(saved))}


def _plan_json(chosen: Plan) -> dict[str, Any]:
    return {"output": chosen.config["output"], "task": chosen.task, "inferred": chosen.inferred,
            "profile": chosen.profile, "config": chosen.config,
            "choices": [asdict(c) for c in chosen.choices], "ranking": chosen.ranking, "estimate": chosen.estimate}


def load_raw(path: Path | None, overrides: list[tuple[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The user's run settings as given (a YAML and flags), before any default (what auto must keep), and the
    YAML's ``auto:`` section; the other commands' sections of a shared YAML are left out."""
    from transferlm.experiments.config import SECTIONS

    raw = read_yaml(path) if path else {}
    section = raw.pop("auto", None) or {}
    for other in SECTIONS:
        raw.pop(other, None)
    for key, value in overrides:
        set_dotted(raw, key, value)
    return raw, section
