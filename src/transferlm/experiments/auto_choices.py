"""``transferlm auto``, step 2: the choices of a plan, each with the evidence behind it (the model, the strategy, the
task settings the checkpoint decides, the input length, class weights, the learning rate and the budget). Settings
the user gave are kept and marked as given."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError
from transferlm.experiments.config import AutoSettings, RankSettings

FEW_PER_CLASS = 16  # at most this many examples in the rarest class: contrastive pairs (bench/README.md, fewshot)
IMBALANCE = 3.0  # the largest class this many times the smallest: class weights
LARGE_DECODER = 500_000_000  # parameters above which a decoder trains with LoRA
MIN_STEPS = 50  # the fewest optimizer steps a plan may have
OVERHEAD_S = 60.0  # loading, encoding, the baseline and writing, besides training and evaluation


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


def given(raw: dict[str, Any], key: str) -> bool:
    data: Any = raw
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def choose_model(config: RunConfig, raw: dict, settings: AutoSettings, chosen: Plan) -> RunConfig:
    if not settings.models or len(settings.models) == 1:
        name = settings.models[0] if settings.models else config.model.name
        why = "the one candidate given" if settings.models else (
            "given" if given(raw, "model.name") else "the default model (pass --models A,B to rank candidates)")
        chosen.choices.append(Choice("model.name", name, why, given(raw, "model.name")))
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


def choose_length(config: RunConfig, raw: dict, chosen: Plan, task, tokenizer, path: Path, train) -> RunConfig:
    """model.max_length from the training inputs' lengths (the rule of ``max_length: auto``), said in the plan."""
    from transferlm.runs.lengths import resolve_max_length

    resolved = resolve_max_length(config, task, tokenizer, path, train)
    length, tokens = resolved.model.max_length, chosen.profile.get("tokens")
    if given(raw, "model.max_length"):
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


def choose_strategy(config: RunConfig, raw: dict, chosen: Plan, path: Path) -> RunConfig:
    from transferlm.config.selected import strategy_settings
    from transferlm.models.resolve import model_kind

    kind, params = model_kind(path), _parameters(path)
    chosen.profile["model"] = {"kind": kind, "parameters": params}
    if given(raw, "strategy.name"):
        chosen.choices.append(Choice("strategy.name", config.strategy.name, "given", True))
        return config
    fewest = chosen.profile.get("fewest_per_class")
    pooling_kept = given(raw, "task.pooling") and getattr(config.task, "pooling", "mean") != "mean"
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


def choose_task_settings(config: RunConfig, chosen: Plan, path: Path) -> RunConfig:
    """The task settings ``train`` decides from the checkpoint (``task.pair_encoding``, ``task.pooling`` auto), decided
    now so that the timed step and the input lengths are the trained model's."""
    from transferlm.runs.task_settings import resolve_task_settings

    config, decided = resolve_task_settings(config, path)
    chosen.choices += [Choice(setting.key, setting.value, setting.because) for setting in decided]
    return config


def explain_recipe(config: RunConfig, raw: dict, chosen: Plan, examples: int) -> None:
    """The learning rate and batch size that ``train.lr``/``train.batch_size: auto`` will take for this plan
    (``runs/recipes.py``), and the rule behind them."""
    from transferlm.runs.recipes import auto_recipe
    from transferlm.strategies import build_strategy

    recipe = auto_recipe(chosen.task, build_strategy(config.strategy), chosen.profile["model"]["kind"], examples)
    for key, value in (("lr", recipe.lr), ("batch_size", recipe.batch_size)):
        if given(raw, f"train.{key}"):
            chosen.choices.append(Choice(f"train.{key}", getattr(config.train, key), "given", True))
        else:
            chosen.choices.append(Choice(f"train.{key}", value, f"train.{key} auto: {recipe.why[key]}"))


def choose_weights(config: RunConfig, raw: dict, chosen: Plan) -> RunConfig:
    imbalance = chosen.profile.get("imbalance")
    if chosen.task != "classification" or imbalance is None or getattr(config.task, "multi_label", False):
        return config
    if given(raw, "task.class_weights"):
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


def choose_budget(config, raw, settings, chosen: Plan, splits, path: Path, spent: float) -> RunConfig:
    """Time one training step, estimate the recipe's run, and cut its steps to fit what is left of the budget after
    ``spent`` seconds of planning (ranking, profiling); evaluations shrink with the steps."""
    from transferlm.experiments.timing import step_seconds

    budget = parse_budget(settings.time_budget)
    left = budget - spent
    step, steps, evaluations, batch_size, epochs, epochs_why = step_seconds(config, splits, path)
    per_evaluation = step / 3 * max(len(splits.validation) / batch_size, 1)
    per_step = step + evaluations * per_evaluation / max(steps, 1)  # a step and its share of the evaluations

    def seconds(n: int) -> float:
        return OVERHEAD_S + n * per_step + per_evaluation  # at least one evaluation

    estimate = seconds(steps)
    chosen.estimate = {"seconds_per_step": round(step, 3), "steps": steps, "evaluations": evaluations,
                       "seconds": round(estimate), "budget_seconds": budget, "planning_seconds": round(spent)}
    fixed = given(raw, "train.max_steps") or given(raw, "train.epochs")
    if fixed or estimate <= left:
        span = "train.max_steps given" if config.train.max_steps else f"{epochs:g} epochs: {epochs_why}"
        why = (f"the recipe's {steps} steps ({span}) at {step:.2f} s each (timed) with {evaluations} evaluations: "
               f"about {estimate / 60:.1f} of the {left / 60:.1f} minutes left")
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
