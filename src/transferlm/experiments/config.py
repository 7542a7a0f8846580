"""Experiment configs: a run config (the shared settings) plus a ``compare:`` or ``curve:`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from transferlm.baselines import BASELINES
from transferlm.config.load import build_config, format_validation_error, read_yaml, set_dotted
from transferlm.config.schema import RunConfig, Section
from transferlm.errors import ConfigError

BASELINE_NAMES = (*BASELINES.names(), "scratch")
SECTIONS = ("compare", "curve", "tune", "rank", "auto")  # the commands whose settings a run config's YAML may hold


class MemberConfig(Section):
    name: str = Field(
        description="A strategy (full, frozen, last-n, lora, bitfit) or a baseline: tfidf (classification: TF-IDF "
        "+ logistic regression), crf (ner: a CRF on word features), overlap (qa: a sliding-window word-overlap answer "
        "finder) or scratch (the same architecture from random "
        "initialisation: no transfer)."
    )
    label: Optional[str] = Field(None, description="Name in the report (default: name); must be unique.")
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted overrides of the shared config for this member, e.g. {strategy.layers: 2, train.lr: 1e-4}.",
    )

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def is_baseline(self) -> bool:
        return self.name in BASELINE_NAMES


Members = list[Union[str, MemberConfig]]
DEFAULT_STRATEGIES = ["frozen", "lora", "full"]


class ExperimentSettings(Section):
    members: Optional[Members] = Field(
        None,
        description="Strategies and baselines to run on the same data, split and budget; null: frozen, lora, "
        "full, the task's baseline (classification: tfidf; ner: crf; qa: overlap) and scratch.",
    )
    seeds: Optional[list[int]] = Field(
        None, description="Training seeds per member; null: 3 seeds below 5,000 training examples, else 1."
    )

    @field_validator("members")
    @classmethod
    def _members(cls, value):
        if value is None:
            return None
        members = [MemberConfig(name=m) if isinstance(m, str) else m for m in value]
        titles = [m.title for m in members]
        repeated = sorted({t for t in titles if titles.count(t) > 1})
        if repeated:
            raise ValueError(f"member {', '.join(repeated)} appears twice; give each a distinct label")
        if not members:
            raise ValueError("list at least one member")
        return members

    def member_list(self, task_baselines: tuple[str, ...]) -> list[MemberConfig]:
        """The members; by default the strategies, the task's own baselines and scratch."""
        if self.members is None:
            return [MemberConfig(name=n) for n in [*DEFAULT_STRATEGIES, *task_baselines, "scratch"]]
        return list(self.members)  # type: ignore[arg-type]


class CompareSettings(ExperimentSettings):
    pass


class CurveSettings(ExperimentSettings):
    sizes: list[Union[int, Literal["all"]]] = Field(
        default_factory=lambda: [4, 8, 16, 64, 256, 1024, "all"],
        description="Labelled examples per class in each nested subset of train; all: the whole train set.",
    )
    small_size: int = Field(
        16, ge=0, description="Sizes up to this many examples per class count as small: they get small_seeds."
    )
    small_seeds: int = Field(
        5,
        ge=0,
        description="At least this many seeds at the small sizes, where a few examples make the spread large "
        "(the given seeds, continued upwards); 0: the same seeds everywhere.",
    )
    min_steps: int = Field(
        50, ge=0, description="Train at least this many optimizer steps on small subsets (more epochs)."
    )
    evaluations: int = Field(5, gt=0, description="Validation passes per run (checkpoint selection).")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value):
        if any(isinstance(v, int) and v <= 0 for v in value):
            raise ValueError("sizes are positive numbers of examples per class, or all")
        return sorted(set(value), key=lambda v: float("inf") if v == "all" else v)


class RankSettings(Section):
    models: Optional[list[str]] = Field(
        None,
        description="Candidate pretrained models: bundled aliases, local directories (an adapt run's output), hub "
        "ids; random:NAME for NAME's architecture randomly initialised (a floor). null: model.name only.",
        json_schema_extra={"comma_separated": True},
    )
    max_examples: int = Field(
        2000, gt=0, description="Score on at most this many training examples (a seeded sample keeping each "
        "class's share): enough to order models, and seconds per model on a CPU.",
    )
    by: Literal["logme", "probe"] = Field(
        "logme", description="Order by LogME (no training at all) or by the linear probe's cross-validated score."
    )
    probe: bool = Field(
        False, description="Also fit a linear probe on each model's last layer (3-fold cross-validated logistic "
        "regression, or ridge for a regression target): a second opinion beside LogME. It took half the ranking's "
        "time on CoNLL-2003 and ranked fine-tuned results less well than LogME on 4 tasks (bench/README.md, auto); "
        "rank.by: probe fits it.",
    )
    layers: Literal["best", "last"] = Field(
        "best", description="LogME of the best layer of each model (the highest over its layers: fine-tuning adapts "
        "them all) or of its last layer only (LogME as published). best ranked fine-tuned results as well or better "
        "on each of 4 tasks (bench/README.md, auto).",
    )

    @property
    def fits_probe(self) -> bool:
        return self.probe or self.by == "probe"


class AutoSettings(Section):
    time_budget: str = Field(
        "30m", description="Wall time the whole job may take (90s, 30m, 2h): the plan's training steps are cut to fit "
        "it, from a timed training step; a budget too small for any plan is an error."
    )
    models: Optional[list[str]] = Field(
        None, description="Candidate models to rank (LogME on frozen features) before choosing one; null: model.name.",
        json_schema_extra={"comma_separated": True},
    )
    tune: bool = Field(False, description="Also run a short tune (median pruning) when the budget holds at least "
                       "5 runs; the best trial's settings train the final run.")
    dry_run: bool = Field(False, description="Profile the data and print the plan; train nothing.")


class ParameterRange(Section):
    """One tuned setting: a float or int range (optionally log-scaled) or a list of choices."""

    type: Literal["float", "int", "categorical"] = Field(description="float, int or categorical.")
    low: Optional[float] = Field(None, description="float/int: the smallest value.")
    high: Optional[float] = Field(None, description="float/int: the largest value.")
    log: bool = Field(False, description="float/int: sample on a log scale (learning rates).")
    choices: Optional[list[Any]] = Field(None, description="categorical: the values to choose from.")

    @model_validator(mode="after")
    def _non_empty(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty list of choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs low and high")
        if self.low >= self.high:
            raise ValueError(f"empty range: low {self.low:g} is not below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low:g}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("int ranges need whole numbers")
        return self


class TuneSettings(Section):
    trials: int = Field(20, gt=0, description="Finished trials the study should have (all workers together).")
    timeout: Optional[float] = Field(None, gt=0, description="Start no new trial after this many seconds.")
    space: Optional[dict[str, ParameterRange]] = Field(
        None,
        description="Config keys to search, e.g. {train.lr: {type: float, low: 1e-5, high: 1e-3, log: true}}; "
        "null: the strategy's default space (see `transferlm tune --help`).",
    )
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stop unpromising trials early on their intermediate validation scores."
    )
    evaluations: int = Field(
        5, gt=0, description="Validation passes per trial (the pruner's intermediate scores) unless "
        "train.evaluations is set; best.yaml keeps the same schedule, so that it selects its checkpoint as the "
        "best trial did."
    )
    storage: Optional[str] = Field(
        None, description="Optuna storage URL (e.g. postgresql://user@host/db for several workers); null: "
        "sqlite:///OUTPUT/study.db."
    )
    study: Optional[str] = Field(None, description="Study name; null: the output directory's name.")
    seed: int = Field(0, description="Seed of the TPE sampler.")
    retrain_best: bool = Field(
        False, description="Train the best config into OUTPUT/best-run (and test it there, if a test split is given)."
    )


def load_experiment_section(path: Path | None, section: str, overrides: list[tuple[str, Any]],
                            settings_cls: type[Section]) -> Section:
    """Only a command's own section (``auto:`` in the YAML, its flags), validated."""
    extra = (read_yaml(path) if path else {}).get(section) or {}
    for key, value in overrides:
        set_dotted(extra, key[len(section) + 1:] if key.startswith(f"{section}.") else key, value)
    try:
        return settings_cls.model_validate(extra)
    except ValidationError as e:
        raise ConfigError([f"{section}.{p}" for p in format_validation_error(e, settings_cls)]) from None


def load_experiment(
    path: Path | None, section: str, overrides: list[tuple[str, Any]], settings_cls: type[ExperimentSettings]
) -> tuple[RunConfig, ExperimentSettings]:
    """The shared run config and the experiment section, each validated, all problems reported together."""
    data = read_yaml(path) if path else {}
    extra = data.pop(section, None) or {}
    for other in set(SECTIONS) - {section}:
        data.pop(other, None)  # one file may hold several sections (README); each command reads its own
    run_overrides = []
    for key, value in overrides:
        if key.startswith(f"{section}."):
            set_dotted(extra, key[len(section) + 1 :], value)
        else:
            run_overrides.append((key, value))
    problems = []
    try:
        run = build_config(data, run_overrides)
    except ConfigError as e:
        problems += e.problems
    try:
        settings = settings_cls.model_validate(extra)
    except ValidationError as e:
        problems += [f"{section}.{p}" for p in format_validation_error(e, settings_cls)]
    if problems:
        raise ConfigError(problems)
    return run, settings
