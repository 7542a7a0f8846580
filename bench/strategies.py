"""Strategies benchmark on SST-2 (not a timed test; figures are printed and saved as JSON).

Parts:
  compare  every strategy and both baselines through `transferlm compare`, on one split and budget:
           dev accuracy, trainable parameters, time, memory. Checks: lora within 1.0 point of full
           with <= 2 % trainable parameters; cached frozen >= 20x faster per epoch than uncached.
  curve    `transferlm curve` at 16/64/256 labels per class over seeds. Check: the best strategy
           reaches >= 83 % dev accuracy at 64 per class.

SST-2's test labels are not public, so SST-2 dev (872) is the reported "test" split here, and a 1 %
stratified carve-out of train is the validation split that selects checkpoints.

Usage: python bench/strategies.py [--parts compare,curve] [--train-cap 20000] [--epochs 1] [--tag cpu]
Reads ../shared/data/sst2 (or $TRANSFERLM_DATA/sst2); exits 0 with a message when it is absent.
$TRANSFERLM_BENCH_MODEL names another model (a local directory) than the bundled minilm.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "sst2"

# Learning rates: 5e-5 for full-model updates (BERT's range), higher where few parameters train
# (LoRA and BitFit papers use 1e-4..1e-3), 1e-3 for a head alone, 1e-4 for a model trained from scratch.
MEMBERS = [
    {"name": "frozen", "set": {"task.pooling": "mean", "train.lr": 1e-3}},
    {
        "name": "frozen",
        "label": "frozen-uncached",
        "set": {"task.pooling": "mean", "train.lr": 1e-3, "strategy.cache_features": False},
    },
    {"name": "last-n", "label": "last-2", "set": {"strategy.layers": 2}},
    {"name": "bitfit", "set": {"train.lr": 5e-4}},
    {"name": "lora", "set": {"train.lr": 5e-4, "strategy.r": 8}},
    {"name": "full"},
    {"name": "tfidf"},
    {"name": "scratch", "set": {"train.lr": 1e-4}},
]
# LoRA on all attention projections, larger rank and rate: for longer runs; and a higher rate alone.
EXTRA_MEMBERS = [
    {"name": "lora", "label": "lora-lr2e-3", "set": {"train.lr": 2e-3, "strategy.r": 8}},
    {
        "name": "lora",
        "label": "lora-qkv",
        "set": {
            "train.lr": 1e-3,
            "strategy.r": 16,
            "strategy.alpha": 32,
            "strategy.target_modules": ["query", "key", "value"],
        },
    },
    {
        "name": "lora",
        "label": "lora-qkv-lr2e-3",
        "set": {
            "train.lr": 2e-3,
            "strategy.r": 16,
            "strategy.alpha": 32,
            "strategy.target_modules": ["query", "key", "value"],
        },
    },
]
COMPARE_PRESETS = {m.get("label", m["name"]): m for m in MEMBERS + EXTRA_MEMBERS}
# Few-shot presets for the curve. Mean pooling suits this sentence-embedding checkpoint (see
# tasks/pooling.py); a higher learning rate suits few, short runs.
CURVE_PRESETS = {
    "full": {"name": "full"},
    "full-mean": {"name": "full", "label": "full-mean", "set": {"task.pooling": "mean", "train.lr": 1e-4}},
    "frozen": {"name": "frozen", "set": {"task.pooling": "mean", "train.lr": 1e-3}},
    "tfidf": {"name": "tfidf"},
}


def capped_train(out: Path, cap: int | None) -> Path:
    """SST-2 train, or a seeded random sample of ``cap`` rows of it."""
    source = DATA / "train.tsv"
    if not cap:
        return source
    with source.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    body = random.Random(0).sample(body, min(cap, len(body)))
    path = out / f"sst2-train-{len(body)}.tsv"
    out.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerows([header, *body])
    return path


MODEL = os.environ.get("TRANSFERLM_BENCH_MODEL", "minilm")


def shared_config(train: Path, output: Path, epochs: float, eval_every: int | str) -> dict:
    return {
        "model": {"name": MODEL, "max_length": 128},
        "data": {
            "train": str(train),
            "test": str(DATA / "dev.tsv"),
            "text_column": "sentence",
            "validation_split": 0.01,
        },
        "train": {"epochs": epochs, "batch_size": 32, "lr": 5e-5, "eval_every": eval_every, "progress": False},
        "output": str(output),
    }


def run_compare(args, out: Path) -> dict:
    from transferlm.config.load import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    train = capped_train(out, args.train_cap)
    config = build_config(shared_config(train, out / "compare", args.epochs, args.eval_every))
    began = time.perf_counter()
    members = [COMPARE_PRESETS[name] for name in args.compare_members.split(",")]
    report = compare(config, CompareSettings(members=members, seeds=[0]))
    rows = {m["title"]: m for m in report["members"]}

    def accuracy(title):
        return rows[title]["summary"]["mean"]

    figures = {
        "wall_minutes": round((time.perf_counter() - began) / 60, 1),
        "train_examples": report["n_train"],
        "accuracy": {t: round(100 * accuracy(t), 2) for t in rows if "summary" in rows[t]},
        "trainable_percent": {
            t: round(100 * r["trainable"] / r["total"], 3) for t, r in rows.items() if "summary" in r
        },
        "verdicts": report["verdicts"],
        "targets": {},
    }
    for lora in [t for t in rows if t.startswith("lora")]:
        if "full" in rows:
            gap = round(100 * (accuracy(lora) - accuracy("full")), 2)
            figures[f"{lora}_minus_full"] = gap
            figures["targets"][f"{lora}_within_1_point_of_full"] = gap >= -1.0
        figures["targets"][f"{lora}_at_most_2_percent_trainable"] = figures["trainable_percent"][lora] <= 2.0
    if "frozen" in rows and "frozen-uncached" in rows:
        cached, uncached = rows["frozen"]["runs"][0], rows["frozen-uncached"]["runs"][0]
        per_epoch = {k: r["train_seconds"] / args.epochs for k, r in (("cached", cached), ("uncached", uncached))}
        figures.update(
            frozen_seconds_per_epoch={k: round(v, 2) for k, v in per_epoch.items()},
            frozen_cache_seconds=cached["feature_cache_seconds"],
            cached_speedup_per_epoch=round(per_epoch["uncached"] / per_epoch["cached"], 1),
            cached_speedup_including_cache=round(
                uncached["train_seconds"] / (cached["train_seconds"] + cached["feature_cache_seconds"]), 1
            ),
        )
        figures["targets"]["cached_frozen_20x_per_epoch"] = figures["cached_speedup_per_epoch"] >= 20
    return figures


def run_curve(args, out: Path) -> dict:
    from transferlm.config.load import build_config
    from transferlm.experiments.config import CurveSettings
    from transferlm.experiments.curve import curve

    config = build_config(shared_config(DATA / "train.tsv", out / "curve", 3, "epoch"))
    config = config.model_copy(update={"train": config.train.model_copy(update={"batch_size": 16})})
    members = [CURVE_PRESETS[name] for name in args.curve_members.split(",")]
    settings = CurveSettings(members=members, seeds=args.curve_seeds, sizes=args.sizes, min_steps=args.min_steps)
    began = time.perf_counter()
    report = curve(config, settings)
    at_64 = {m: next((p for p in line if p["size_per_class"] == 64), None) for m, line in report["curves"].items()}
    candidates = [m for m in at_64 if at_64[m] and m != "tfidf"]
    best = max(candidates, key=lambda m: at_64[m]["mean"]) if candidates else None
    return {
        "wall_minutes": round((time.perf_counter() - began) / 60, 1),
        "curves": {
            m: [
                (
                    p["size_per_class"],
                    p["n_train"],
                    round(100 * p["mean"], 2),
                    None if p["std"] is None else round(100 * p["std"], 2),
                )
                for p in line
            ]
            for m, line in report["curves"].items()
        },
        "best_at_64_per_class": best and {"member": best, "accuracy": round(100 * at_64[best]["mean"], 2)},
        "statements": report["statements"],
        "targets": {"best_at_64_per_class_at_least_83": bool(best) and at_64[best]["mean"] >= 0.83},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="compare,curve")
    parser.add_argument("--train-cap", type=int, default=20000, help="0: all 67,349 examples.")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--eval-every", default=200, type=lambda v: v if v == "epoch" else int(v))
    parser.add_argument(
        "--sizes", default="16,64,256", type=lambda v: [int(x) if x.isdigit() else x for x in v.split(",")]
    )
    parser.add_argument("--curve-seeds", default="0,1,2", type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--min-steps", type=int, default=150)
    parser.add_argument(
        "--compare-members",
        default=",".join(m.get("label", m["name"]) for m in MEMBERS),
        help=f"From: {', '.join(COMPARE_PRESETS)}",
    )
    parser.add_argument("--curve-members", default="full-mean,frozen,tfidf", help=f"From: {', '.join(CURVE_PRESETS)}")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-strategies")
    parser.add_argument("--tag", default="cpu", help="Names the results file: bench/results/strategies-TAG.json")
    parser.add_argument("--json-out", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"SST-2 not found at {DATA}; set TRANSFERLM_DATA or see shared/data/README.md. Nothing run.")
        return 0
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="transferlm: %(message)s", stream=sys.stderr)
    results = {
        "device": "cuda: " + torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"cpu ({torch.get_num_threads()} threads)",
        "train_cap": args.train_cap,
        "epochs": args.epochs,
    }
    parts = args.parts.split(",")
    if "compare" in parts:
        results["compare"] = run_compare(args, args.output)
    if "curve" in parts:
        results["curve"] = run_curve(args, args.output)
    text = json.dumps(results, indent=2)
    print(text)
    saved = ROOT / "bench" / "results" / f"strategies-{args.tag}"
    saved.mkdir(parents=True, exist_ok=True)
    (saved / "figures.json").write_text(text + "\n")
    for part in ("compare", "curve"):
        for name in ("report.md", "chart.png", "curve.png", "curve.csv"):
            if (args.output / part / name).is_file():
                shutil.copy(args.output / part / name, saved / f"{part}-{name}")
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
