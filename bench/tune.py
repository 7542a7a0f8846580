"""Tuning benchmark (issue 11): `transferlm tune` on an SST-2 subset for lora and full, against each strategy's
default config, with and without pruning (not a timed test; figures are printed and saved as JSON).

For each strategy: the default config (auto epochs and lr) trained once; a study of --trials trials with the
median pruner; the same study without pruning. Reported: validation accuracy of the default and of each study's
best trial, SST-2 dev accuracy (the test split: evaluated once, for the default run and each best trial), and wall
time of each study. Targets: the tuned lora within 0.5 point of the tuned full; pruning saves >= 40 % of the time
at a best score within 0.5 point.

Usage: python bench/tune.py [--train-cap 5000] [--trials 20] [--strategies lora,full] [--unpruned lora,full]
                            [--epochs auto] [--output DIR] [--tag cpu]
--unpruned names the strategies whose study is also run without pruning (the time comparison); --epochs fixes
each run's budget (the default run's and every trial's alike) where `auto` would be too long for the machine.
Reads ../shared/data/sst2 (or $TRANSFERLM_DATA/sst2); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from strategies import DATA, MODEL, capped_train  # noqa: E402  (the same seeded SST-2 subsets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-cap", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--strategies", default="lora,full")
    parser.add_argument("--unpruned", default="lora,full", help="Strategies also tuned without pruning")
    parser.add_argument("--epochs", default="auto", help="train.epochs of every run (auto or a number)")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-tune")
    parser.add_argument("--tag", default="cpu", help="Names the results file: bench/results/tune-TAG.json")
    args = parser.parse_args()
    if not (DATA / "train.tsv").is_file():
        print(f"{DATA}/train.tsv not found; skipped (see ../shared/data/README.md)")
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    from transferlm.config.load import build_config
    from transferlm.experiments.config import TuneSettings
    from transferlm.experiments.tune import tune
    from transferlm.runs.train import train

    train_file = capped_train(args.output, args.train_cap)
    epochs = args.epochs if args.epochs == "auto" else float(args.epochs)
    results: dict = {"model": MODEL, "train_examples": args.train_cap, "trials": args.trials, "epochs": args.epochs}
    for strategy in args.strategies.split(","):
        def config(output: Path, strategy: str = strategy):
            return build_config({
                "model": {"name": MODEL, "max_length": 128},
                "data": {"train": str(train_file), "test": str(DATA / "dev.tsv"), "text_column": "sentence"},
                "strategy": {"name": strategy},
                "train": {"progress": False, "epochs": epochs},
                "output": str(output),
            })

        began = time.perf_counter()
        default = train(config(args.output / strategy / "default"), overwrite=True)
        figures = {"default": {"validation": default.summary.validation["accuracy"],
                               "test": default.test["accuracy"],
                               "wall_seconds": round(time.perf_counter() - began, 1)}}
        pruners = ("median", "none") if strategy in args.unpruned.split(",") else ("median",)
        for pruner in pruners:
            began = time.perf_counter()
            report = tune(config(args.output / strategy / f"tune-{pruner}"),
                          TuneSettings(trials=args.trials, pruner=pruner))
            figures[f"tuned-{pruner}"] = {
                "validation": report["best"]["validation"],
                "test": report["test"].get("accuracy"),
                "params": report["best"]["params"],
                "trials": report["trials"],
                "wall_seconds": round(time.perf_counter() - began, 1),
            }
        if "tuned-none" in figures:
            saved = 1 - figures["tuned-median"]["wall_seconds"] / figures["tuned-none"]["wall_seconds"]
            figures["pruning_time_saved_percent"] = round(100 * saved, 1)
            figures["pruning_best_gap_points"] = round(
                100 * (figures["tuned-none"]["validation"] - figures["tuned-median"]["validation"]), 2)
        results[strategy] = figures
        print(json.dumps({strategy: figures}, indent=2), flush=True)
    if {"lora", "full"} <= results.keys():
        gap = 100 * (results["full"]["tuned-median"]["test"] - results["lora"]["tuned-median"]["test"])
        results["lora_minus_full_tuned_points"] = round(-gap, 2)
    path = ROOT / "bench" / "results" / f"tune-{args.tag}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
