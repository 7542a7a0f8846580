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
import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transferlm.config.load import build_config, config_to_dict, read_yaml, set_dotted
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError
from transferlm.experiments.auto_report import write_report
from transferlm.experiments.config import AutoSettings, CompareSettings, MemberConfig, RankSettings, TuneSettings
from transferlm.experiments.profile import Inferred, infer_task, profile

log = logging.getLogger(__name__)

FEW_PER_CLASS = 16  # at most this many examples in the rarest class: contrastive pairs (bench/README.md, fewshot)
IMBALANCE = 3.0  # the largest class this many times the smallest: class weights
LARGE_DECODER = 500_000_000  # parameters above which a decoder trains with LoRA
MIN_STEPS = 50  # the fewest optimizer steps a plan may have
OVERHEAD_S = 60.0  # loading, encoding, the baseline and writing, besides training and evaluation
TUNE_RUNS = 5  # a tune is planned only when the budget holds this many runs


@dataclass
class Choice:
    key: str  # the config key chosen (or a step: model, budget)
    value: Any
    why: str
    given: bool = False  # the user set it; kept as given


@dataclass
class Plan:
    task: str
    inferred: str
    profile: dict[str, Any]
    choices: list[Choice] = field(default_factory=list)
    ranking: list[dict[str, Any]] | None = None
    estimate: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def parse_budget(text: str | float | int) -> float:
    """Seconds from 90, 90s, 30m, 1.5h."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not match:
        raise ConfigError(f"auto.time_budget: {text!r} is not a duration; write it as 90s, 30m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _given(raw: dict[str, Any], key: str) -> bool:
    data: Any = raw
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


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
        if not _given(raw, f"task.{key}"):
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
                                     _given(raw, f"task.{key}")))
    config = _choose_model(config, raw, settings, chosen)
    resolved = resolve_model(config.model.name)
    tokenizer = load_tokenizer(resolved.path)
    chosen.profile = profile(task, splits.train, tokenizer)
    chosen.profile["validation"] = {"examples": len(splits.validation), "source": splits.validation_source}
    config = _choose_strategy(config, raw, chosen, resolved.path)
    config = _choose_task_settings(config, chosen, resolved.path)
    task = build_task(config.task, config.data)  # as it trains: a bi-encoder's inputs are its texts, one by one
    config = _choose_length(config, raw, chosen, task, tokenizer, resolved.path, splits.train)
    config = _choose_weights(config, raw, chosen)
    _explain_rate(config, raw, chosen, len(splits.train))
    config = _choose_budget(config, raw, settings, chosen, splits, resolved.path, time.time() - started)
    chosen.config = config_to_dict(config)
    return chosen


def _choose_model(config: RunConfig, raw: dict, settings: AutoSettings, chosen: Plan) -> RunConfig:
    if not settings.models or len(settings.models) == 1:
        name = settings.models[0] if settings.models else config.model.name
        why = "the one candidate given" if settings.models else (
            "given" if _given(raw, "model.name") else "the default model (pass --models A,B to rank candidates)")
        chosen.choices.append(Choice("model.name", name, why, _given(raw, "model.name")))
        return config.model_copy(update={"model": config.model.model_copy(update={"name": name})})
    from transferlm.experiments.rank import RANDOM, rank

    ranked = rank(config.model_copy(update={"output": str(Path(config.output) / "rank")}),
                  RankSettings(models=settings.models))
    chosen.ranking = [asdict(r) for r in ranked]
    usable = [r for r in ranked if not r.error and not r.model.startswith(RANDOM)]  # random: a floor, not a pick
    if not usable:
        raise ConfigError("auto: no candidate of --models could be scored (see rank.md); give loadable models")
    best = usable[0]
    others = ", ".join(f"{r.model} {r.logme:.3f}" for r in ranked if r is not best and not r.error)
    chosen.choices.append(Choice("model.name", best.model, f"highest LogME on frozen features ({best.logme:.3f}; "
                                 f"{others}); {sum(r.seconds for r in ranked):.0f} s for the ranking"))
    return config.model_copy(update={"model": config.model.model_copy(update={"name": best.model})})


def _choose_length(config: RunConfig, raw: dict, chosen: Plan, task, tokenizer, path: Path, train) -> RunConfig:
    """model.max_length from the training inputs' lengths (the rule of ``max_length: auto``), said in the plan."""
    from transferlm.runs.lengths import resolve_max_length

    resolved = resolve_max_length(config, task, tokenizer, path, train)
    length, tokens = resolved.model.max_length, chosen.profile.get("tokens")
    if _given(raw, "model.max_length"):
        chosen.choices.append(Choice("model.max_length", config.model.max_length, "given", True))
    elif tokens is None:
        chosen.choices.append(Choice("model.max_length", length, f"task {task.name} reads its inputs in windows of "
                                     "this many tokens"))
    else:
        longer = tokens["p95"] > length
        mode = getattr(config.task, "long_inputs", None)
        why = (f"95 % of training inputs fit in {tokens['p95']} tokens" if not longer else
               f"95 % of training inputs need {tokens['p95']} tokens, more than the {length} chosen; longer inputs "
               f"are read as task.long_inputs {mode} says")
        chosen.choices.append(Choice("model.max_length", length, why))
    return resolved


def _parameters(path: Path) -> int:
    """The model's parameter count from its config, without loading weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def _choose_strategy(config: RunConfig, raw: dict, chosen: Plan, path: Path) -> RunConfig:
    from transferlm.config.selected import strategy_settings
    from transferlm.models.resolve import model_kind

    kind, params = model_kind(path), _parameters(path)
    chosen.profile["model"] = {"kind": kind, "parameters": params}
    if _given(raw, "strategy.name"):
        chosen.choices.append(Choice("strategy.name", config.strategy.name, "given", True))
        return config
    fewest = chosen.profile.get("fewest_per_class")
    pooling_kept = _given(raw, "task.pooling") and getattr(config.task, "pooling", "mean") != "mean"
    if (chosen.task == "classification" and kind == "encoder" and fewest is not None and fewest <= FEW_PER_CLASS
            and not pooling_kept):
        name, why = "contrastive", (f"{fewest} examples in the rarest class (at most {FEW_PER_CLASS}): contrastive "
                                    "pairs (SetFit-style) came first at 8 to 64 per class on AG News and SST-2 "
                                    "(bench/README.md, fewshot)")
    elif kind == "decoder" and params > LARGE_DECODER:
        name, why = "lora", (f"a {params / 1e6:.0f}M-parameter decoder: LoRA trains under 1 % of the weights and "
                             "keeps optimizer memory small")
    else:
        name, why = "full", (f"{chosen.profile['examples']:,} training examples on a {params / 1e6:.0f}M-parameter "
                             f"{kind}: full fine-tuning (the best transfer at this size in bench/README.md's "
                             "comparisons)")
    chosen.choices.append(Choice("strategy.name", name, why))
    config = config.model_copy(update={"strategy": strategy_settings(name=name)})
    if name == "contrastive" and getattr(config.task, "pooling", None) != "mean":
        # contrastive trains mean-pooled sentence embeddings and fits its head on them
        chosen.choices.append(Choice("task.pooling", "mean", "contrastive trains and reads mean-pooled sentence "
                                     "embeddings"))
        config = config.model_copy(update={"task": config.task.model_copy(update={"pooling": "mean"})})
    return config


def _choose_task_settings(config: RunConfig, chosen: Plan, path: Path) -> RunConfig:
    """The task settings ``train`` decides from the checkpoint (``task.pair_encoding``, ``task.pooling`` auto), decided
    now so that the timed step and the input lengths are the trained model's."""
    from transferlm.runs.task_settings import resolve_task_settings

    config, decided = resolve_task_settings(config, path)
    chosen.choices += [Choice(setting.key, setting.value, setting.because) for setting in decided]
    return config


def _explain_rate(config: RunConfig, raw: dict, chosen: Plan, examples: int) -> None:
    """The learning rate ``train.lr: auto`` will take for this plan (``runs/recipes.py``), and the rule behind it."""
    from transferlm.runs.recipes import auto_recipe
    from transferlm.strategies import build_strategy

    if _given(raw, "train.lr"):
        chosen.choices.append(Choice("train.lr", config.train.lr, "given", True))
        return
    recipe = auto_recipe(chosen.task, build_strategy(config.strategy), chosen.profile["model"]["kind"], examples)
    chosen.choices.append(Choice("train.lr", recipe.lr, f"train.lr auto: {recipe.because}"))


def _choose_weights(config: RunConfig, raw: dict, chosen: Plan) -> RunConfig:
    imbalance = chosen.profile.get("imbalance")
    if chosen.task != "classification" or imbalance is None or getattr(config.task, "multi_label", False):
        return config
    if _given(raw, "task.class_weights"):
        chosen.choices.append(Choice("task.class_weights", config.task.class_weights, "given", True))
        return config
    if imbalance >= IMBALANCE and config.strategy.name == "contrastive":
        chosen.choices.append(Choice("task.class_weights", "none", f"the largest class is {imbalance:g} times the "
                                     "smallest, but contrastive's head is fitted on balanced pairs and takes no "
                                     "class weights"))
        return config
    if imbalance >= IMBALANCE:
        chosen.choices.append(Choice("task.class_weights", "auto", f"the largest class is {imbalance:g} times the "
                                     f"smallest (at least {IMBALANCE:g}): inverse-frequency class weights"))
        return config.model_copy(update={"task": config.task.model_copy(update={"class_weights": "auto"})})
    return config


def _choose_budget(config, raw, settings, chosen: Plan, splits, path: Path, spent: float) -> RunConfig:
    """Time one training step, estimate the recipe's run, and cut its steps to fit what is left of the budget after
    ``spent`` seconds of planning (ranking, profiling); evaluations shrink with the steps."""
    from transferlm.experiments.timing import step_seconds

    budget = parse_budget(settings.time_budget)
    left = budget - spent
    step, steps, evaluations = step_seconds(config, splits, path)
    per_evaluation = step / 3 * max(len(splits.validation) / config.train.batch_size, 1)
    per_step = step + evaluations * per_evaluation / max(steps, 1)  # a step and its share of the evaluations

    def seconds(n: int) -> float:
        return OVERHEAD_S + n * per_step + per_evaluation  # at least one evaluation

    estimate = seconds(steps)
    chosen.estimate = {"seconds_per_step": round(step, 3), "steps": steps, "evaluations": evaluations,
                       "seconds": round(estimate), "budget_seconds": budget, "planning_seconds": round(spent)}
    fixed = _given(raw, "train.max_steps") or _given(raw, "train.epochs")
    if fixed or estimate <= left:
        why = (f"the recipe's {steps} steps at {step:.2f} s each (timed) with {evaluations} evaluations: about "
               f"{estimate / 60:.1f} of the {left / 60:.1f} minutes left")
        chosen.choices.append(Choice("train.epochs", config.train.epochs, why, fixed))
        return config
    fit = int((left - OVERHEAD_S - per_evaluation) / per_step)
    if fit < MIN_STEPS:
        raise ConfigError(f"auto: a time budget of {budget:.0f} s is too small for any plan: the smallest "
                          f"({MIN_STEPS} steps at {step:.2f} s a step with their evaluations) needs about "
                          f"{seconds(MIN_STEPS) + spent:.0f} s; give --time-budget "
                          f"{max(1, round((seconds(MIN_STEPS) + spent) * 1.5 / 60))}m or a smaller --model")
    chosen.estimate.update(steps=fit, seconds=round(seconds(fit)))
    chosen.choices.append(Choice("train.max_steps", fit, f"the recipe's {steps} steps would take about "
                                 f"{estimate / 60:.1f} minutes at {step:.2f} s a step (timed); {fit} fit the "
                                 f"{left / 60:.1f} minutes left"))
    return config.model_copy(update={"train": config.train.model_copy(update={"max_steps": fit})})


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
    from transferlm.experiments.tune import default_space, tune

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
             if key != "train.batch_size" and not _given(raw, key)}
    if not space:
        chosen["choices"].append(_choice("tune", "skipped", "every setting of the search space was given"))
        return {}
    report = tune(build_config(data), TuneSettings(trials=trials, timeout=0.6 * budget, space=space))
    params = report["best"]["params"]
    chosen["choices"].append(_choice("tune", params, f"{trials} trials planned in 60 % of the {budget / 60:.0f} "
                                 f"minutes left; best validation {report['best']['validation']:.4f}"))
    return params


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
