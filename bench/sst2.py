"""SST-2 benchmark for transferlm (not a timed test; figures are printed and saved as JSON).

Parts, each in its own process so peak RSS is per part:
  speed   transferlm vs HF Trainer with its defaults (DataCollatorWithPadding, random batches) and with
          group_by_length=True (its best CPU setting), same model, data, batch size and lr, for a fixed
          number of optimizer steps; prints both ratios.
  full    full fine-tuning of the bundled MiniLM on SST-2 train; dev accuracy, wall time, RSS, samples/s.
  frozen  the frozen strategy (backbone fixed, head trained); dev accuracy.

Usage: python bench/sst2.py [--parts speed,full,frozen] [--epochs 3] [--speed-steps 150] [--speed-rounds 3]
Reads ../shared/data/sst2 (or $TRANSFERLM_DATA/sst2); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "sst2"
BATCH, LR = 32, 5e-5


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def transferlm_config(out: Path, **train) -> dict:
    return {
        "model": {"name": "minilm", "max_length": 128},
        "data": {"train": str(DATA / "train.tsv"), "validation": str(DATA / "dev.tsv"), "text_column": "sentence"},
        "train": {"batch_size": BATCH, "lr": LR, "progress": False, **train},
        "output": str(out),
    }


def part_transferlm(out: Path, strategy: str, pooling: str, **train) -> dict:
    import transferlm

    config = transferlm_config(out, **train)
    config["strategy"] = {"name": strategy}
    config["task"] = {"pooling": pooling}
    began = time.perf_counter()
    result = transferlm.train(config, overwrite=True)
    s = result.summary
    return {
        "strategy": strategy,
        "dev_accuracy": s.validation["accuracy"],
        "best_step": s.best_step,
        "steps": s.steps,
        "wall_s": round(time.perf_counter() - began, 1),
        "train_s": s.train_seconds,
        "train_samples_per_s": s.train_samples_per_s,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config": config,
    }


def _length_grouping(on: bool) -> dict:
    """The TrainingArguments keyword for length-grouped batches: transformers 5 replaced group_by_length with
    train_sampling_strategy="group_by_length" (passing the old keyword is a TypeError there)."""
    from transformers import TrainingArguments

    if "group_by_length" in TrainingArguments.__dataclass_fields__:
        return {"group_by_length": on}
    return {"train_sampling_strategy": "group_by_length" if on else "random"}


def part_trainer(steps: int, group_by_length: bool = False) -> dict:
    import csv

    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from transferlm.models.resolve import resolve_model

    path = resolve_model("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    with open(DATA / "train.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    enc = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=128)
    dataset = [
        {
            "input_ids": enc["input_ids"][i],
            "token_type_ids": enc["token_type_ids"][i],
            "attention_mask": enc["attention_mask"][i],
            "labels": int(rows[i]["label"]),
        }
        for i in range(len(rows))
    ]
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=BATCH,
            learning_rate=LR,
            max_steps=steps,
            save_strategy="no",
            report_to=[],
            logging_steps=steps,
            seed=42,
            disable_tqdm=True,
            **_length_grouping(group_by_length),
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer)
        )
        metrics = trainer.train().metrics
    return {
        "trainer_samples_per_s": round(metrics["train_samples_per_second"], 2),
        "steps": steps,
        "trainer_runtime_s": round(metrics["train_runtime"], 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_part(name: str, args: argparse.Namespace) -> dict:
    """Run one part in a child process and return its JSON result."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--epochs",
        str(args.epochs),
        "--speed-steps",
        str(args.speed_steps),
        "--eval-every",
        str(args.eval_every),
        "--pooling",
        args.pooling,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"part {name} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(name: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if name == "ours_speed":
            return part_transferlm(out, "full", "cls", max_steps=args.speed_steps, eval_every=10**9)
        if name == "trainer_speed":
            return part_trainer(args.speed_steps)
        if name == "trainer_grouped_speed":
            return part_trainer(args.speed_steps, group_by_length=True)
        if name == "full":
            return part_transferlm(out, "full", args.pooling, epochs=args.epochs, eval_every=args.eval_every)
        if name == "frozen":
            return part_transferlm(out, "frozen", args.pooling, epochs=2, lr=1e-3, eval_every=args.eval_every)
    raise SystemExit(f"unknown part {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="speed,full,frozen")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--speed-steps", type=int, default=150)
    parser.add_argument("--speed-rounds", type=int, default=3, help="Alternating rounds of the speed part.")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--pooling", choices=["cls", "mean"], default="cls", help="task.pooling for full/frozen.")
    parser.add_argument("--json-out", type=Path, help="Also write all results here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (DATA / "train.tsv").is_file():
        print(f"SKIP: SST-2 not found at {DATA}; put GLUE SST-2 train.tsv/dev.tsv there or set TRANSFERLM_DATA")
        return
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    results: dict = {"machine": {"cpus": os.cpu_count()}, "batch_size": BATCH, "lr": LR}
    for part in args.parts.split(","):
        if part == "speed":
            # Rounds alternate transferlm and the length-grouped Trainer, so that both sides see the same
            # machine; the ratio reported is the median of the rounds' ratios (one round is noisy here).
            theirs = run_part("trainer_speed", args)
            rounds = []
            for _ in range(args.speed_rounds):
                ours, grouped = run_part("ours_speed", args), run_part("trainer_grouped_speed", args)
                rounds.append({"transferlm": ours, "trainer_group_by_length": grouped,
                               "ratio": round(ours["train_samples_per_s"] / grouped["trainer_samples_per_s"], 3)})
                print(f"  round {len(rounds)}: transferlm {ours['train_samples_per_s']:.1f} samples/s, "
                      f"Trainer group_by_length {grouped['trainer_samples_per_s']:.1f} ({rounds[-1]['ratio']:.2f}x)",
                      flush=True)
            ours = rounds[0]["transferlm"]
            ratio = statistics.median(r["transferlm"]["train_samples_per_s"] for r in rounds) / theirs[
                "trainer_samples_per_s"]
            ratio_grouped = statistics.median(r["ratio"] for r in rounds)
            results["speed"] = {"trainer": theirs, "rounds": rounds, "throughput_ratio": round(ratio, 2),
                                "throughput_ratio_vs_grouped": round(ratio_grouped, 2)}
            print(
                f"speed ({args.speed_steps} steps, batch {BATCH}, {len(rounds)} rounds): transferlm against HF "
                f"Trainer defaults {theirs['trainer_samples_per_s']:.1f} samples/s: {ratio:.2f}x (target >= 1.5); "
                f"against Trainer group_by_length: median {ratio_grouped:.2f}x",
                flush=True,
            )
        else:
            r = results[part] = run_part(part, args)
            print(
                f"{part} (pooling {args.pooling}): dev accuracy {100 * r['dev_accuracy']:.2f} "
                f"(best step {r['best_step']} of {r['steps']}), "
                f"wall {r['wall_s'] / 60:.1f} min, train {r['train_samples_per_s']:.1f} samples/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
