"""``transferlm tune``: hyperparameter search on the validation split with Optuna.

Each trial is one `train` run in its own process (the child runner of `compare`, which measures its time and peak
memory and keeps a leaking or crashing trial from taking the search down). The parent asks the study for a trial
(TPE), writes the trial's config, and tells the study the result; the child reports every validation score to the
same storage, where the pruner (median or Hyperband) decides whether to stop it. A pruned trial still ends as a
complete run directory with its best checkpoint.

The study lives in an Optuna storage: SQLite in the output directory by default, so re-running the same command
continues it, or any RDB URL, so several workers (``transferlm tune`` on several machines with one ``--storage``
and ``--study``) share one search. ``tune.trials`` counts finished trials of the whole study.

Only validation scores select: trials never see the test split. The test split, when given, is evaluated once,
for the best trial, and the report says so.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import yaml

from transferlm.config.load import build_config, config_to_dict, set_dotted
from transferlm.config.schema import RunConfig
from transferlm.errors import ConfigError, ExperimentError
from transferlm.experiments.config import MemberConfig, ParameterRange, TuneSettings
from transferlm.experiments.jobs import Job, run_job, tracked_experiment
from transferlm.extras import require
from transferlm.runs import layout
from transferlm.tasks import build_task
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

TUNE = "`transferlm tune`"  # what needs the tune extra, in its messages

# The default search space of each strategy: the learning rate on a log scale around the strategy's default (the
# setting that matters most), the batch size, and what the strategy itself adds.
_LR_RANGES = {"full": (1e-5, 2e-4), "last-n": (1e-5, 5e-4), "bitfit": (1e-4, 5e-3), "lora": (2e-4, 1e-2),
              "frozen": (1e-4, 2e-2), "contrastive": (1e-5, 2e-4)}
_EXTRA = {
    "lora": {"strategy.r": {"type": "categorical", "choices": [4, 8, 16]}},
    "last-n": {"strategy.layers": {"type": "int", "low": 1, "high": 4}},
    "contrastive": {"strategy.pairs_per_example": {"type": "int", "low": 5, "high": 40, "log": True}},
}


def default_space(strategy: str) -> dict[str, ParameterRange]:
    low, high = _LR_RANGES.get(strategy, (1e-5, 1e-3))
    space = {
        "train.lr": {"type": "float", "low": low, "high": high, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [8, 16, 32]},
        "train.weight_decay": {"type": "categorical", "choices": [0.0, 0.01, 0.1]},
        **_EXTRA.get(strategy, {}),
    }
    return {key: ParameterRange.model_validate(value) for key, value in space.items()}


def check_space(config: RunConfig, space: dict[str, ParameterRange]) -> None:
    """Every key must be a config key that takes the values the range gives: checked by building the config with
    each end of the range (or each choice), before any trial starts."""
    problems = []
    for key, spec in space.items():
        if key.split(".")[0] == "output" or key.startswith("data."):
            problems.append(f"tune.space.{key}: data and output are not tunable; tune training settings")
            continue
        values = spec.choices if spec.type == "categorical" else [spec.low, spec.high]
        for value in values:
            data = config_to_dict(config)
            try:
                set_dotted(data, key, int(value) if spec.type == "int" else value)
                build_config(data)
            except ConfigError as e:
                problems += [f"tune.space.{key} = {value!r}: {p}" for p in e.problems]
                break
    if problems:
        raise ConfigError(problems)


SCHEMA_RACE_TRIES = 4


def open_study(settings: TuneSettings, output: Path, direction: str):
    optuna = require("optuna", "tune", TUNE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = settings.storage or f"sqlite:///{(output / 'study.db').resolve()}"
    name = settings.study or output.resolve().name
    for attempt in range(SCHEMA_RACE_TRIES):
        try:
            study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, direction=direction,
                                        sampler=optuna.samplers.TPESampler(seed=settings.seed),
                                        pruner=make_pruner(settings.pruner))
            break
        except Exception as e:  # sqlalchemy/driver errors: a URL that cannot be opened, a missing driver
            # Workers that start together on a new database race to create Optuna's tables: the losers' inserts
            # violate a unique key (IntegrityError). Once the winner has committed, opening succeeds.
            if type(e).__name__ == "IntegrityError" and attempt + 1 < SCHEMA_RACE_TRIES:
                log.info("tune.storage: another worker is creating the study's tables; opening again")
                time.sleep(1 + attempt)
                continue
            raise ConfigError(f"tune.storage {storage!r} cannot be opened: {type(e).__name__}: {e}; give a "
                              "reachable database URL (sqlite:///path.db, postgresql://user:password@host/db)") from e
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} in {storage} maximises/minimises the other way ({study.direction.name}); "
                          "use another --study for this metric")
    return study, storage, name


def make_pruner(name: str):
    """The pruner of ``tune.pruner``. Storage does not keep it, so the trial's process builds its own from the
    name: median and Hyperband decide from the intermediate values in the storage alone."""
    optuna = require("optuna", "tune", TUNE)
    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto"),
        "none": lambda: optuna.pruners.NopPruner(),
    }[name]()


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_abandoned(study) -> None:
    """Trials this machine started whose process is gone (an interrupted `tune`) count as failed, so that
    re-running continues with new trials instead of waiting for them."""
    optuna = require("optuna", "tune", TUNE)
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker", "")
        name, _, pid = owner.partition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            log.info("trial %d: its tune process %s is gone; marked failed", trial.number, owner)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _suggest(trial, key: str, spec: ParameterRange) -> Any:
    if spec.type == "float":
        return trial.suggest_float(key, spec.low, spec.high, log=spec.log)
    if spec.type == "int":
        return trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_categorical(key, spec.choices)


def trial_config(base: dict, params: dict[str, Any], output: Path) -> RunConfig:
    data = json.loads(json.dumps(base))
    for key, value in params.items():
        set_dotted(data, key, value)
    data["output"] = str(output)
    return build_config(data)


def tune(config: RunConfig, settings: TuneSettings) -> dict[str, Any]:
    optuna = require("optuna", "tune", TUNE)
    if config.output is None:
        raise ConfigError("output: tune needs --output (trials, the study and the reports are written there)")
    out = Path(config.output)
    task = build_task(config.task, config.data)
    metric = config.train.metric or task.default_metric
    direction = "maximize" if task.greater_is_better(metric) else "minimize"
    space = settings.space or default_space(config.strategy.name)
    check_space(config, space)
    out.mkdir(parents=True, exist_ok=True)
    study, storage, name = open_study(settings, out, direction)
    _fail_abandoned(study)

    # Trials see train and validation only; each evaluates `tune.evaluations` times (the pruner's scores).
    base = with_trial_schedule(config_to_dict(config), settings)
    base["data"]["test"] = None
    base["train"]["progress"] = False
    log.info("tune: study %r in %s, %s %s; space: %s", name, storage, direction, metric, ", ".join(space))
    began = time.time()
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    with tracked_experiment(config, "tune", settings):
        while True:
            states = [t.state for t in study.get_trials(deepcopy=False)]
            finished = sum(s in done_states for s in states)
            running = states.count(optuna.trial.TrialState.RUNNING)
            if finished + running >= settings.trials:
                break
            if settings.timeout and time.time() - began >= settings.timeout:
                log.info("tune: timeout (%.0f s) reached; no new trials", settings.timeout)
                break
            _run_trial(study, storage, name, base, space, out, config, metric, settings)
        return _write_outputs(study, out, config, metric, space, settings)


def with_trial_schedule(config: dict, settings: TuneSettings) -> dict:
    """``config`` (a dict) evaluating as a trial does: ``tune.evaluations`` times unless ``train.evaluations`` is
    set. The schedule decides which checkpoint is kept, so best.yaml carries it too: trained from best.yaml, the
    best trial's settings select their checkpoint as the trial did (SST-2, 600 rows, seed 42: test 81.77 at the
    trial's 5 evaluations, 80.05 at one per epoch; bench/README.md, auto)."""
    if config["train"].get("evaluations") is None:
        config["train"]["evaluations"] = settings.evaluations
    return config


def ask(study, space: dict[str, ParameterRange], seed: int):
    """A new trial and its parameters. The sampler is seeded with ``seed`` plus the trial's number: one seed
    for the whole study would restart its random stream in every process, so a resumed study would draw its first
    configurations again, and two workers sharing a study would draw the same ones. Trial numbers are unique in
    the study, so each trial draws its own, and the same study run again draws the same."""
    optuna = require("optuna", "tune", TUNE)
    trial = study.ask()
    study.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)  # read at each suggest, not at ask
    return trial, {key: _suggest(trial, key, spec) for key, spec in space.items()}


def _run_trial(study, storage: str, name: str, base: dict, space, out: Path, config: RunConfig, metric: str,
               settings: TuneSettings) -> None:
    optuna = require("optuna", "tune", TUNE)
    trial, params = ask(study, space, settings.seed)
    trial.set_user_attr("worker", _worker())
    job_dir = out / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str((job_dir / "run").resolve()))
    run_config = trial_config(base, params, job_dir / "run")
    member = MemberConfig(name=config.strategy.name, label=f"trial {trial.number}")
    job = Job(member, run_config.train.seed, job_dir, Path(run_config.data.train), 0)
    log.info("tune: trial %d: %s", trial.number, ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                            for k, v in params.items()))
    try:
        result = run_job(job, run_config, {"storage": storage, "study": name, "trial_id": trial._trial_id,
                                           "pruner": settings.pruner})
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; the trial's process is stopped. Failed now, so that no worker
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # counts it as running, here or on other machines
        log.info("tune: trial %d interrupted; marked failed", trial.number)
        raise
    if "error" in result:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.error("tune: trial %d failed: %s", trial.number, result["error"])
        return
    for key in ("wall_seconds", "peak_rss_mb", "steps"):
        trial.set_user_attr(key, result.get(key))
    value = result["metrics"]["validation"][metric]
    if result.get("pruned"):
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log.info("tune: trial %d pruned (best validation %s so far %.4f)", trial.number, metric, value)
    else:
        study.tell(trial, value)
        log.info("tune: trial %d: validation %s = %.4f (%.0f s)", trial.number, metric, value,
                 result.get("wall_seconds", 0))


def _write_outputs(study, out: Path, config: RunConfig, metric: str, space,
                   settings: TuneSettings) -> dict[str, Any]:
    optuna = require("optuna", "tune", TUNE)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ExperimentError(["no trial completed; see the logs under " + str(out / "trials")])
    best = study.best_trial
    best_config = trial_config(with_trial_schedule(config_to_dict(config), settings), best.params, out / "best-run")
    atomic_write_text(out / "best.yaml", yaml.safe_dump(config_to_dict(best_config), sort_keys=False))
    atomic_write_text(out / "trials.csv", _trials_csv(trials, list(space)))
    report: dict[str, Any] = {
        "study": study.study_name,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "trials": {state.name.lower(): sum(t.state == state for t in trials) for state in optuna.trial.TrialState},
        "best": {"number": best.number, "validation": best.value, "params": best.params,
                 "run_dir": best.user_attrs.get("run_dir")},
        "importances": _importances(study, complete),
    }
    if config.data.test:
        report["test"] = _test_once(best, best_config, config, settings.retrain_best, out)
    elif settings.retrain_best:
        report["retrained"] = _retrain(best_config, out)
    from transferlm.experiments.tune_report import write_tune_report

    write_tune_report(out, report, study, complete)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    return report


def _importances(study, complete) -> dict[str, float] | None:
    differ = len({json.dumps(t.params, sort_keys=True, default=str) for t in complete}) > 1
    if not differ or len({t.value for t in complete}) < 2:
        return None  # fANOVA explains the variance of the scores: it needs trials that differ in both
    optuna = require("optuna", "tune", TUNE)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # fANOVA (Hutter et al., 2014)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: round(float(v), 4) for k, v in importances.items()}


def _test_once(best, best_config: RunConfig, config: RunConfig, retrain: bool, out: Path) -> dict[str, Any]:
    """The test split, evaluated once: on the retrained best config, or on the best trial's own run."""
    from transferlm.runs.predictor import load

    if retrain:
        retrained = _retrain(best_config, out)
        return {"evaluated": "retrained best config", "run_dir": retrained["run_dir"], **retrained["test"]}
    run_dir = Path(best.user_attrs.get("run_dir", ""))
    if not layout.is_complete(run_dir):
        return {"evaluated": None, "reason": f"the best trial's run {run_dir} is not on this machine (another "
                "worker ran it); pass --retrain-best to train and test its config here"}
    metrics = load(run_dir).evaluate(config.data.test)
    return {"evaluated": "best trial's run", "run_dir": str(run_dir), **metrics}


def _retrain(best_config: RunConfig, out: Path) -> dict[str, Any]:
    from transferlm.runs.train import train

    result = train(best_config, overwrite=True)
    return {"run_dir": str(result.run_dir), "validation": result.summary.validation, "test": result.test or {}}


def _trials_csv(trials, keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "value", *keys, "wall_seconds", "peak_rss_mb", "steps", "worker"])
    for t in trials:
        writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                         *[t.params.get(k, "") for k in keys],
                         *[t.user_attrs.get(k, "") for k in ("wall_seconds", "peak_rss_mb", "steps", "worker")]])
    return buffer.getvalue()
