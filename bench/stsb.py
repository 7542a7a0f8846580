"""STS Benchmark (sentence-pair regression) for transferlm (not a timed test; figures are printed and saved).

Parts, each in its own process so peak RSS is per part:
  zeroshot  no training: cosine similarity of the bundled MiniLM's own mean-pooled sentence embeddings
            (all-MiniLM-L6-v2 is published at about 82 Spearman on STS-B test).
  ridge     the no-transfer baselines: TF-IDF + ridge regression (alpha chosen on dev), and the training mean.
  full      MiniLM as a cross-encoder (both sentences in one input, a one-output head), or with --pair-encoding
            bi as a bi-encoder (each sentence embedded on its own, the output a line of their cosine), full
            fine-tuning on sts-train; sts-dev selects the checkpoint (Spearman); test scored once. Target: test
            Spearman >= 86.
            Runs through ``transferlm.train`` with ``task.type: regression``; until that task is registered
            it says so and is skipped.

Figures are Pearson and Spearman x 100 on sts-test (and dev), wall time and peak RSS per part.

Usage: python bench/stsb.py [--parts zeroshot,ridge,full] [--epochs 4] [--lr 5e-5] [--batch-size 16]
       [--max-train-rows 500] [--device auto|cpu] [--json-out bench/results/stsb.json]
Reads ../shared/data/stsb (or $TRANSFERLM_DATA/stsb); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "stsb"
# The release's files: tab-separated despite .csv, no header, unbalanced quotes in sentences, and two
# attribution columns on some rows (shared/data/stsb/README.md).
STS_COLUMNS = {"format": "tsv", "header": False, "quoting": False, "extra_columns": "ignore", "text_column": 5,
               "text_pair_column": 6, "label_column": 4}


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_file(max_rows: int | None, tmp: Path, both_orders: bool = False) -> Path:
    """sts-train, or a seeded sample of ``max_rows`` of its lines (in file order) for a quick run; with
    ``both_orders``, each pair also appears with its sentences swapped (the score is symmetric), written to tmp."""
    source = DATA / "sts-train.csv"
    if not max_rows and not both_orders:
        return source
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = sorted(random.Random(0).sample(range(len(lines)), min(max_rows or len(lines), len(lines))))
    chosen = [lines[i] for i in keep]
    if both_orders:
        chosen += [_swapped(line) for line in chosen]
    target = tmp / f"sts-train-{len(chosen)}.csv"
    target.write_text("".join(chosen), encoding="utf-8")
    return target


def _swapped(line: str) -> str:
    cells = line.rstrip("\n").split("\t")
    cells[5], cells[6] = cells[6], cells[5]
    return "\t".join(cells) + "\n"


def data_section(train: Path) -> dict:
    return {"train": str(train), "validation": str(DATA / "sts-dev.csv"), "test": str(DATA / "sts-test.csv"),
            **STS_COLUMNS}


def read_split(path: Path):
    from transferlm.config.schema import DataConfig
    from transferlm.data.records import read_records

    records, problems = read_records(path, DataConfig(**data_section(path)))
    if problems:
        raise SystemExit("\n".join(problems))
    return records


def scaled(metrics: dict) -> dict:
    return {"pearson": round(100 * metrics["pearson"], 2), "spearman": round(100 * metrics["spearman"], 2),
            "rmse": round(metrics["rmse"], 4), "n": metrics["n"]}


def part_zeroshot(args: argparse.Namespace, tmp: Path) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from transferlm.evaluation.regression import regression_metrics
    from transferlm.models.resolve import resolve_model

    began = time.perf_counter()
    path = resolve_model(args.model).path
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).to(device).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), 64):
            enc = tokenizer(texts[start : start + 64], truncation=True, max_length=256, padding=True,
                            return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())  # the model's own pooling
        return torch.cat(out)

    result = {}
    for split in ("dev", "test"):
        records = read_split(DATA / f"sts-{split}.csv")
        cosine = F.cosine_similarity(embed([r.text for r in records]), embed([r.text_pair for r in records]))
        result[split] = scaled(regression_metrics(cosine.numpy(), [float(r.label) for r in records]))
    return {**result, "device": device, "wall_s": round(time.perf_counter() - began, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def part_ridge(args: argparse.Namespace, tmp: Path) -> dict:
    from transferlm.baselines.regression import run_mean, run_ridge
    from transferlm.config.schema import DataConfig
    from transferlm.tasks.regression import RegressionSettings, RegressionTask

    began = time.perf_counter()
    train_path = train_file(args.max_train_rows, tmp)
    task = RegressionTask(RegressionSettings(), DataConfig(**data_section(train_path)))
    train = read_split(train_path)
    evaluate = {"validation": read_split(DATA / "sts-dev.csv"), "test": read_split(DATA / "sts-test.csv")}
    problems = task.fit_labels(train, evaluate)
    if problems:
        raise SystemExit("\n".join(problems))
    out = {}
    for name, run in (("ridge", run_ridge), ("mean", run_mean)):
        fitted = run(task, train, evaluate, seed=0)
        out[name] = {"dev": scaled(fitted.metrics["validation"]), "test": scaled(fitted.metrics["test"]),
                     "chosen": fitted.chosen, "train_s": fitted.train_seconds}
    return {**out, "n_train": len(train), "wall_s": round(time.perf_counter() - began, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def part_full(args: argparse.Namespace, tmp: Path) -> dict:
    import transferlm
    from transferlm.tasks import TASKS

    if "regression" not in TASKS.names():
        return {"skipped": "task.type regression is not registered yet (transferlm.tasks.regression exists; "
                           "the settings system must register it)"}
    config = {
        "model": {"name": args.model, "max_length": 128},
        "task": {"type": "regression", "pooling": args.pooling, "pair_encoding": args.pair_encoding},
        "data": data_section(train_file(args.max_train_rows, tmp, args.both_orders)),
        "strategy": {"name": "full"},
        "train": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "warmup_ratio": 0.1,
                  "eval_every": args.eval_every, "metric": "spearman", "progress": False},
        "output": str(tmp / "run"),
    }
    began = time.perf_counter()
    result = transferlm.train(config, overwrite=True)
    s = result.summary
    return {"dev": scaled(s.validation), "test": scaled(result.test), "best_step": s.best_step, "steps": s.steps,
            "wall_s": round(time.perf_counter() - began, 1), "train_s": s.train_seconds,
            "train_samples_per_s": s.train_samples_per_s, "peak_rss_mb": round(peak_rss_mb(), 1), "config": config}


PARTS = {"zeroshot": part_zeroshot, "ridge": part_ridge, "full": part_full}


def run_part(name: str, argv: list[str], device: str) -> dict:
    """One part in a child process (its own peak RSS); ``--device cpu`` hides any GPU from it."""
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {})}
    done = subprocess.run([sys.executable, __file__, *argv, "--child", name], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"part {name} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(name: str, r: dict) -> str:
    if "skipped" in r:
        return f"{name}: skipped ({r['skipped']})"
    if name == "ridge":
        return (f"ridge (TF-IDF, alpha {r['ridge']['chosen']['alpha']}, {r['n_train']} train rows): test Pearson "
                f"{r['ridge']['test']['pearson']:.2f} Spearman {r['ridge']['test']['spearman']:.2f} (dev Spearman "
                f"{r['ridge']['dev']['spearman']:.2f}); training mean: test RMSE {r['mean']['test']['rmse']:.3f}; "
                f"wall {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    extra = f", best step {r['best_step']} of {r['steps']}" if name == "full" else f" on {r['device']}"
    return (f"{name}: test Pearson {r['test']['pearson']:.2f} Spearman {r['test']['spearman']:.2f} (dev Spearman "
            f"{r['dev']['spearman']:.2f}){extra}; wall {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="zeroshot,ridge,full")
    parser.add_argument("--model", default="minilm", help="Model spec (alias, directory or hub id).")
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=180, help="Optimizer steps between dev evaluations.")
    parser.add_argument("--pooling", choices=["cls", "mean"], default="mean", help="task.pooling for full.")
    parser.add_argument("--pair-encoding", choices=["cross", "bi"], default="cross",
                        help="task.pair_encoding for full: cross (both sentences in one input) or bi (each embedded on "
                        "its own, the output read off their cosine).")
    parser.add_argument("--max-train-rows", type=int, help="A seeded sample of this many training rows.")
    parser.add_argument("--both-orders", action="store_true",
                        help="full: train on each pair in both sentence orders (twice the rows per epoch).")
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto", help="cpu: hide any GPU.")
    parser.add_argument("--json-out", type=Path, help="Also write all results here (e.g. bench/results/stsb.json).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (DATA / "sts-train.csv").is_file():
        print(f"SKIP: STS Benchmark not found at {DATA}; see shared/data/stsb/README.md or set TRANSFERLM_DATA")
        return
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(PARTS[args.child](args, Path(tmp))))
        return
    argv = ["--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
            "--eval-every", str(args.eval_every), "--pooling", args.pooling, "--pair-encoding", args.pair_encoding,
            "--device", args.device,
            "--model", args.model, *(["--both-orders"] if args.both_orders else []),
            *(["--max-train-rows", str(args.max_train_rows)] if args.max_train_rows else [])]
    results: dict = {"machine": {"cpus": os.cpu_count()}, "args": {k: str(v) for k, v in vars(args).items()}}
    for name in args.parts.split(","):
        if name not in PARTS:
            raise SystemExit(f"--parts: unknown part {name!r}; the parts are {', '.join(PARTS)}")
        results[name] = run_part(name, argv, args.device)
        print(describe(name, results[name]), flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
