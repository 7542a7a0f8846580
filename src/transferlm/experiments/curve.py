"""``transferlm curve``: the metric against the number of labelled examples, on nested stratified subsets,
for transferred models and baselines; and how many labels transfer saves, measured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transferlm.config.schema import RunConfig
from transferlm.errors import ExperimentError
from transferlm.experiments.compare import Prepared, member_kind, prepare, slug, validated_configs
from transferlm.experiments.config import CurveSettings
from transferlm.experiments.jobs import Job, run_job, tracked_experiment
from transferlm.experiments.splits import nested_subset, write_records
from transferlm.experiments.stats import Summary, labels_needed

log = logging.getLogger(__name__)


def _budget(config: RunConfig, settings: CurveSettings) -> dict[str, Any]:
    """Small subsets get at least ``min_steps`` steps; evaluation is spread over ``evaluations`` passes. The
    loop counts the steps, since a strategy may train on other items than the examples (contrastive: pairs)."""
    train = config.train
    return {"min_steps": max(train.min_steps or 0, settings.min_steps) or None,
            "evaluations": train.evaluations or settings.evaluations}


def seeds_for(size, seeds: list[int], settings: CurveSettings) -> list[int]:
    """The seeds of one size: the experiment's, topped up to ``small_seeds`` at the small sizes."""
    if size == "all" or size > settings.small_size or len(seeds) >= settings.small_seeds:
        return list(seeds)
    extra = range(max(seeds) + 1, max(seeds) + 1 + settings.small_seeds - len(seeds))
    return [*seeds, *extra]


def plan(config: RunConfig, settings: CurveSettings, prepared: Prepared) -> tuple[list[Job], list[dict]]:
    out = Path(config.output)
    train = prepared.splits.train
    jobs, budgets = [], []
    for size in settings.sizes:
        for seed in seeds_for(size, prepared.seeds, settings):
            if size == "all":
                records, path = train, prepared.files.train
            else:
                records = nested_subset(train, prepared.task.split_key, size, seed)
                path = out / "data" / f"train-{size}-per-class-seed-{seed}.jsonl"
                if not path.is_file():
                    write_records(path, records, prepared.task)
            for member in prepared.members:
                job_dir = out / "runs" / slug(member.title) / f"n-{size}" / f"seed-{seed}"
                jobs.append(Job(member, seed, job_dir, path, len(records), size))
                budgets.append(_budget(config, settings))
    return jobs, budgets


def points(jobs: list[Job], results: list[dict[str, Any]], prepared: Prepared) -> list[dict[str, Any]]:
    rows = []
    for job, result in zip(jobs, results, strict=True):
        row = {
            "member": job.member.title,
            "kind": member_kind(job.member),
            "size_per_class": job.size,
            "n_train": job.n_train,
            "seed": job.seed,
        }
        if "error" in result:
            rows.append({**row, "value": None, "error": result["error"]})
        else:
            rows.append(
                {
                    **row,
                    "value": result["metrics"][prepared.files.evaluated][prepared.metric],
                    "train_seconds": result["train_seconds"],
                    "wall_seconds": result.get("wall_seconds"),
                    "peak_rss_mb": result.get("peak_rss_mb"),
                }
            )
    return rows


def curves(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, Summary, Any]]]:
    """member -> [(n_train, summary over seeds, size label)], by n_train."""
    grouped: dict[str, dict[Any, list]] = {}
    for row in rows:
        if row["value"] is not None:
            grouped.setdefault(row["member"], {}).setdefault(row["size_per_class"], []).append(row)
    result = {}
    for member, by_size in grouped.items():
        entries = []
        for size, members_rows in by_size.items():
            n = round(sum(r["n_train"] for r in members_rows) / len(members_rows))
            entries.append((n, Summary.of([r["value"] for r in members_rows]), size))
        result[member] = sorted(entries, key=lambda e: e[0])
    return result


def efficiency(lines: dict[str, list[tuple[int, Summary, Any]]], kinds: dict[str, str]) -> list[str]:
    """For each transferred member's point: the labels each baseline needs to match it."""
    statements = []
    for member, line in lines.items():
        if kinds[member] != "transfer":
            continue
        for baseline, base_line in lines.items():
            if kinds[baseline] != "baseline":
                continue
            base_points = [(n, s.mean) for n, s, _ in base_line]
            for n, summary, _ in line:
                needed = labels_needed(base_points, summary.mean)
                head = f"with {n:,} labels, {member} reaches {100 * summary.mean:.2f}"
                smallest = min(base_points)
                if smallest[1] >= summary.mean:
                    statements.append(
                        f"{head}; {baseline} matches that already at its smallest size "
                        f"({smallest[0]:,} labels: {100 * smallest[1]:.2f})"
                    )
                elif needed is None:
                    most = max(base_points)
                    statements.append(
                        f"{head}; {baseline} does not reach that with any size tried "
                        f"(up to {most[0]:,} labels: {100 * most[1]:.2f})"
                    )
                else:
                    statements.append(
                        f"{head}; {baseline} needs ≈{needed:,.0f} labels to match it ({needed / n:.1f}x as many)"
                    )
    return statements


def curve(config: RunConfig, settings: CurveSettings, overwrite: bool = False) -> dict[str, Any]:
    from transferlm.experiments.report import write_curve_report

    prepared = prepare(config, settings, "curve", overwrite)
    jobs, budgets = plan(config, settings, prepared)
    configs = validated_configs(config, jobs, prepared.files, budgets)
    log.info(
        "curve: %d runs (%d members, sizes %s, seeds %s; at most %d per class: %d seeds); %s on %s",
        len(jobs),
        len(prepared.members),
        settings.sizes,
        prepared.seeds,
        settings.small_size,
        max(settings.small_seeds, len(prepared.seeds)),
        prepared.metric,
        prepared.files.evaluated,
    )
    results = []
    with tracked_experiment(config, "curve", settings):
        for i, (job, job_config) in enumerate(zip(jobs, configs, strict=True), start=1):
            log.info("curve [%d/%d]: %s", i, len(jobs), job.describe)
            results.append(run_job(job, job_config))
        rows = points(jobs, results, prepared)
        lines = curves(rows)
        kinds = {m.title: member_kind(m) for m in prepared.members}
        report = write_curve_report(Path(config.output), rows, lines, efficiency(lines, kinds), kinds, prepared,
                                    config)
    failed = [
        f"{r['member']} at {r['size_per_class']} per class, seed {r['seed']}: {r['error']}"
        for r in rows
        if r["value"] is None
    ]
    if failed:
        raise ExperimentError([*failed, "re-run the same command to retry only the failed runs"])
    return report
