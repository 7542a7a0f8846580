"""``transferlm compare``: strategies and baselines on the same data, split and budget; which transfer
helped, by how much, at what cost, and whether any of it is negative transfer."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from transferlm.config.load import config_to_dict
from transferlm.config.schema import RunConfig
from transferlm.config.selected import strategy_settings
from transferlm.errors import ConfigError, ExperimentError, RunDirError
from transferlm.experiments.config import CompareSettings, ExperimentSettings, MemberConfig
from transferlm.experiments.jobs import Job, check_members, is_fitted_baseline, job_config, run_job, tracked_experiment
from transferlm.experiments.splits import SplitFiles, write_splits
from transferlm.experiments.stats import Summary, paired_standard_error, verdict
from transferlm.runs.card import add_comparison
from transferlm.runs.prepare import Splits, load_splits
from transferlm.strategies import build_strategy
from transferlm.tasks import build_task
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

EXPERIMENT = "experiment.yaml"
SMALL_DATA = 5000  # below this many training examples, seed noise is large: 3 seeds by default


@dataclass(frozen=True)
class Prepared:
    task: Any
    splits: Splits
    files: SplitFiles
    metric: str
    seeds: list[int]
    members: list[MemberConfig]


def prepare(config: RunConfig, settings: ExperimentSettings, kind: str, overwrite: bool) -> Prepared:
    """Check the output directory, read and check the data once, write the shared split files."""
    out = Path(config.output)
    record = yaml.safe_dump(
        {"kind": kind, "run": config_to_dict(config), kind: settings.model_dump(mode="json")}, sort_keys=False
    )
    saved = out / EXPERIMENT
    if out.exists() and any(out.iterdir()) and not overwrite:
        if not saved.is_file():
            raise RunDirError(f"{out}: holds other files; choose another output or pass --overwrite")
        if saved.read_text() != record:
            raise RunDirError(
                f"{out}: holds a {kind} run with a different config; re-run with the same config to "
                "continue it, choose another output, or pass --overwrite"
            )
        log.info("%s: continuing the experiment in %s (finished runs are reused)", kind, out)
    elif overwrite and out.exists():
        shutil.rmtree(out)
    if config.strategy != strategy_settings():
        raise ConfigError(
            f"strategy: the members choose the strategy, so the shared strategy section would be "
            f"ignored; move its settings into a member's set, e.g. {{name: lora, set: "
            f"{{strategy.r: 16}}}}, under {kind}.members"
        )
    task = build_task(config.task, config.data)
    members = settings.member_list(task.baselines)
    check_members(members, task)
    splits = load_splits(config, task)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, record)
    files = write_splits(out / "data", splits, task)
    seeds = settings.seeds or ([0, 1, 2] if len(splits.train) < SMALL_DATA else [0])
    return Prepared(task, splits, files, config.train.metric or task.default_metric, seeds, members)


def slug(title: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in title)


def member_kind(member: MemberConfig) -> str:
    return "baseline" if member.is_baseline else "transfer"


def aggregate(member: MemberConfig, results: list[dict[str, Any]], prepared: Prepared) -> dict[str, Any]:
    """Per-member figures over its seeds (failed seeds are listed, not averaged)."""
    done = [r for r in results if "error" not in r]
    values = [r["metrics"][prepared.files.evaluated][prepared.metric] for r in done]
    row: dict[str, Any] = {
        "title": member.title,
        "name": member.name,
        "kind": member_kind(member),
        "overrides": member.set,
        "values": values,
        "runs": results,
        "failed": [r["error"] for r in results if "error" in r],
    }
    if not done:
        return row
    row.update(
        summary=Summary.of(values),
        trainable=done[0]["trainable"],
        total=done[0]["total"],
        train_seconds=sum(r["train_seconds"] for r in done) / len(done),
        samples_per_s=sum(r["samples_per_s"] for r in done) / len(done),
        peak_rss_mb=max(r["peak_rss_mb"] for r in done),
        peak_gpu_mb=max((r["peak_gpu_mb"] or 0) for r in done) or None,
    )
    return row


def judge(rows: list[dict[str, Any]], prepared: Prepared) -> str | None:
    """Attach each transferred member's difference to the best baseline and its verdict."""
    baselines = [r for r in rows if r["kind"] == "baseline" and "summary" in r]
    if not baselines:
        return None
    best = max(baselines, key=lambda r: r["summary"].mean)
    proportion = "loss" not in prepared.metric
    for row in rows:
        if "summary" not in row:
            continue
        row["difference"] = row["summary"].mean - best["summary"].mean
        if row["kind"] == "transfer":
            row["verdict"] = verdict(
                row["title"],
                row["summary"],
                best["title"],
                best["summary"],
                prepared.files.n_eval,
                proportion,
                paired_se=_paired(row, best, prepared.files.evaluated),
            )
    return best["title"]


def _paired(row: dict[str, Any], best: dict[str, Any], split: str) -> float | None:
    """With one seed on each side, compare the two example by example (seed noise is unmeasured anyway)."""
    if row["summary"].n != 1 or best["summary"].n != 1:
        return None
    ours, theirs = (
        next(r for r in x["runs"] if "error" not in r).get("example_scores", {}).get(split) for x in (row, best)
    )
    if not ours or not theirs or len(ours) != len(theirs):
        return None
    return paired_standard_error(ours, theirs)


def compare(config: RunConfig, settings: CompareSettings, overwrite: bool = False) -> dict[str, Any]:
    from transferlm.experiments.report import write_compare_report

    prepared = prepare(config, settings, "compare", overwrite)
    out = Path(config.output)
    members = prepared.members
    jobs = [
        Job(m, s, out / "runs" / slug(m.title) / f"seed-{s}", prepared.files.train, len(prepared.splits.train))
        for m in members
        for s in prepared.seeds
    ]
    configs = validated_configs(config, jobs, prepared.files)
    log.info(
        "compare: %d members x %d seeds on %d training examples; reporting %s on %s (%d examples)",
        len(members),
        len(prepared.seeds),
        len(prepared.splits.train),
        prepared.metric,
        prepared.files.evaluated,
        prepared.files.n_eval,
    )
    results: dict[str, list[dict[str, Any]]] = {m.title: [] for m in members}
    with tracked_experiment(config, "compare", settings):
        for i, job in enumerate(jobs, start=1):
            log.info("compare [%d/%d]: %s", i, len(jobs), job.describe)
            results[job.member.title].append(run_job(job, configs[i - 1]))
        rows = [aggregate(m, results[m.title], prepared) for m in members]
        best = judge(rows, prepared)
        report = write_compare_report(out, rows, best, prepared, config)
        _verdicts_on_cards(report)
    failed = [f"{r['title']}: {e}" for r in rows for e in r["failed"]]
    if failed:
        raise ExperimentError(
            [
                *failed,
                f"the report in {out} covers the runs that finished; re-run the same "
                "command to retry only the failed ones",
            ]
        )
    return report


def _verdicts_on_cards(report: dict[str, Any]) -> None:
    """Each transferred member's runs carry compare's verdict on their model cards."""
    for member in report["members"]:
        verdict = member.get("verdict")
        if not verdict:
            continue
        comparison = {"verdict": verdict["words"], "outcome": verdict["outcome"], "difference": verdict["difference"],
                      "best_baseline": report["best_baseline"], "metric": report["metric"], "split": report["split"]}
        for run in member["runs"]:
            if run.get("run_dir"):
                try:
                    add_comparison(Path(run["run_dir"]), comparison)
                except Exception as e:  # noqa: BLE001 - a card is a description; the report stands without it
                    log.warning("%s: compare's verdict could not be added to its model card (%s: %s)",
                                run["run_dir"], type(e).__name__, e)


def validated_configs(
    config: RunConfig, jobs: list[Job], files: SplitFiles, extra: list[dict[str, Any]] | None = None
) -> list[RunConfig]:
    """Every job's config, validated up front so all problems surface before hours of training."""
    configs, problems = [], []
    for i, job in enumerate(jobs):
        try:
            configs.append(job_config(config, job, files, extra[i] if extra else {}))
            if not is_fitted_baseline(job.member):
                build_strategy(configs[-1].strategy)  # option errors now, not after the first runs
        except ConfigError as e:
            problems += [p for p in e.problems if p not in problems]
    if problems:
        raise ConfigError(problems)
    return configs
