"""Long documents: IMDb reviews under each ``task.long_inputs`` mode (not a timed test; figures are printed and saved).

Every mode trains MiniLM (full fine-tuning) on the same seeded training subset of IMDb's train split, selects its
checkpoint on the same seeded dev set (also from train, disjoint), and is scored once on the same seeded subset
of the test split. Each run is its own ``transferlm train`` process, so its peak RSS is its own. Modes:

  truncate-128   model.max_length 128, task.long_inputs truncate (0.1's default)
  truncate-512   the same at 512
  head-tail-512  the first 128 and the last 382 tokens of the 510 a window holds (Sun et al., 2019)
  windows-256    overlapping windows of 256 (a quarter shared), the document's logits averaged
  windows-512    the same at 512
  default        no max_length, long_inputs or stride: what a user gets with no flags

For each: test accuracy (windows modes also with the max of the windows' logits, from the same run), validation
accuracy, training seconds and samples/s, peak RSS, prediction documents/s (a fresh process predicting the test
texts), and the share of test inputs cut.

Usage: python bench/long_docs.py [--modes truncate-128,windows-256,...] [--train-rows 2000] [--dev-rows 500]
       [--test-rows 1000] [--epochs 2] [--json-out bench/results/long-docs-cpu.json]
Reads ../shared/data/imdb (or $TRANSFERLM_DATA/imdb); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "imdb"
MODES = {
    "truncate-128": {"model": {"max_length": 128}, "task": {"long_inputs": "truncate"}},
    "truncate-512": {"model": {"max_length": 512}, "task": {"long_inputs": "truncate"}},
    "head-tail-512": {"model": {"max_length": 512}, "task": {"long_inputs": "head-tail"}},
    "windows-256": {"model": {"max_length": 256}, "task": {"long_inputs": "windows"}},
    "windows-512": {"model": {"max_length": 512}, "task": {"long_inputs": "windows"}},
    "default": {},
}


def rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_jsonl(path: Path, chosen: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in chosen),
                    encoding="utf-8")
    return path


def splits(args, tmp: Path) -> dict[str, Path]:
    """Seeded, disjoint train and dev subsets of IMDb train, and a seeded subset of IMDb test (the files are sorted
    by label, so they are shuffled before taking any)."""
    train = rows(DATA / "train.csv")
    random.Random(args.seed).shuffle(train)
    test = rows(DATA / "test.csv")
    random.Random(args.seed + 1).shuffle(test)
    return {"train": write_jsonl(tmp / "train.jsonl", train[: args.train_rows]),
            "validation": write_jsonl(tmp / "dev.jsonl", train[args.train_rows: args.train_rows + args.dev_rows]),
            "test": write_jsonl(tmp / "test.jsonl", test[: args.test_rows])}


def config_for(mode: str, files: dict[str, Path], out: Path, args) -> dict:
    extra = MODES[mode]
    return {
        "model": {"name": args.model, **extra.get("model", {})},
        "task": {"type": "classification", **extra.get("task", {})},
        "data": {k: str(v) for k, v in files.items()},
        "train": {"epochs": args.epochs, "seed": args.seed, "progress": False},
        "output": str(out),
    }


PREDICT = """
import json, sys, time
import transferlm
predictor = transferlm.load(sys.argv[1])
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8")]
began = time.perf_counter()
predictions = predictor.predict(texts)
seconds = time.perf_counter() - began
result = {"predict_seconds": round(seconds, 1), "docs_per_s": round(len(texts) / seconds, 2),
          "marked_truncated": sum("truncated" in p for p in predictions)}
if predictor.task.task_config.long_inputs == "windows":
    records = predictor.read(sys.argv[2])
    features = predictor.features(records, with_labels=True)
    outputs = predictor.outputs(features)
    for how in ("mean", "max"):
        predictor.task.task_config = predictor.task.task_config.model_copy(update={"window_aggregate": how})
        result[f"test_accuracy_{how}"] = predictor.task.metrics(outputs, features)["accuracy"]
print(json.dumps(result))
"""


def run_mode(mode: str, files: dict[str, Path], tmp: Path, args) -> dict:
    import yaml

    out = tmp / f"run-{mode}"
    config = tmp / f"{mode}.yaml"
    config.write_text(yaml.safe_dump(config_for(mode, files, out, args)))
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "transferlm", "train", str(config)],
                          capture_output=True, text=True)
    if done.returncode:
        return {"mode": mode, "failed": done.stderr[-3000:]}
    metrics = json.loads((out / "metrics.json").read_text())
    saved = yaml.safe_load((out / "transferlm.yaml").read_text())
    training = metrics["training"]
    predicted = subprocess.run([sys.executable, "-c", PREDICT, str(out), str(files["test"])],
                               capture_output=True, text=True, check=True)
    result = {
        "mode": mode,
        "max_length": saved["model"]["max_length"],
        "long_inputs": saved["task"]["long_inputs"],
        "epochs": saved["train"]["epochs"],
        "test_accuracy": metrics["test"]["accuracy"],
        "validation_accuracy": metrics["validation"]["accuracy"],
        "train_seconds": round(training["train_seconds"], 1),
        "train_samples_per_s": round(training["train_samples_per_s"], 2),
        "train_docs_per_s": round(args.train_rows * saved["train"]["epochs"] / training["train_seconds"], 2),
        "peak_rss_mb": round(training["peak_rss_mb"]),
        "truncation": training.get("truncation"),
        "wall_seconds": round(time.time() - began, 1),
        **json.loads(predicted.stdout.strip().splitlines()[-1]),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "long-docs-cpu.json")
    args = parser.parse_args()
    if not (DATA / "train.csv").is_file():
        print(f"IMDb not found at {DATA}: skipping (set TRANSFERLM_DATA to the folder holding imdb/)")
        return 0
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    results = json.loads(args.json_out.read_text()) if args.json_out.is_file() else {}
    results["setup"] = {k: getattr(args, k) for k in ("model", "train_rows", "dev_rows", "test_rows", "epochs", "seed")}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        files = splits(args, tmp)
        for mode in modes:
            result = run_mode(mode, files, tmp, args)
            print(json.dumps(result), flush=True)
            results.setdefault("modes", {})[mode] = result
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(results, indent=2) + "\n")  # after each mode: a crash keeps the rest
    return 0


if __name__ == "__main__":
    sys.exit(main())
