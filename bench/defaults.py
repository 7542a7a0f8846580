"""The 600-row SST-2 check of issue 11: a new user's run with no training flags, before and after the auto
defaults (not a timed test; figures are printed and saved as JSON).

600 rows sampled from SST-2 train (seed 0), the first 300 sentences of SST-2 dev as the test set; validation is
the default 10 % carve-out of the 600. Runs, each in its own process, with the bundled minilm:
  defaults    no training flags: train.epochs, train.lr and task.pooling auto.
  old         the values the defaults had before they were auto: 3 epochs, lr 5e-5, [CLS] pooling.
  old-batch8  the old values with --batch-size 8 (the issue's 75.7 % configuration).
Target: defaults >= 75 % test accuracy.

Usage: python bench/defaults.py [--output DIR] [--runs defaults,old,old-batch8]
Reads ../shared/data/sst2 (or $TRANSFERLM_DATA/sst2); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "sst2"
RUNS = {
    "defaults": [],
    "old": ["--epochs", "3", "--lr", "5e-5", "--pooling", "cls"],
    "old-batch8": ["--epochs", "3", "--lr", "5e-5", "--pooling", "cls", "--batch-size", "8"],
}


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerows([header, *rows])
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-defaults")
    parser.add_argument("--runs", default=",".join(RUNS))
    args = parser.parse_args()
    if not (DATA / "train.tsv").is_file():
        print(f"{DATA}/train.tsv not found; skipped (see ../shared/data/README.md)")
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    read = lambda name: list(csv.reader((DATA / name).open(encoding="utf-8"), delimiter="\t",  # noqa: E731
                                        quoting=csv.QUOTE_NONE))
    train, dev = read("train.tsv"), read("dev.tsv")
    train_file = write_tsv(args.output / "train-600.tsv", train[0], random.Random(0).sample(train[1:], 600))
    test_file = write_tsv(args.output / "dev-300.tsv", dev[0], dev[1:301])
    results = {}
    for name in args.runs.split(","):
        out = args.output / name
        command = [sys.executable, "-m", "transferlm", "train", "--train", str(train_file), "--test", str(test_file),
                   "--text-column", "sentence", "--output", str(out), "--overwrite", "--no-progress", *RUNS[name]]
        began = time.perf_counter()
        subprocess.run(command, check=True)
        metrics = json.loads((out / "metrics.json").read_text())
        config = (out / "transferlm.yaml").read_text()
        results[name] = {
            "flags": " ".join(RUNS[name]) or "(none)",
            "test_accuracy": round(100 * metrics["test"]["accuracy"], 2),
            "steps": metrics["training"]["steps"],
            "best_step": metrics["training"]["best_step"],
            "wall_seconds": round(time.perf_counter() - began, 1),
            "resolved": {line.strip().split(":")[0]: line.split(":", 1)[1].strip() for line in config.splitlines()
                         if line.strip().startswith(("epochs:", "lr:", "pooling:", "batch_size:"))},
        }
        print(json.dumps({name: results[name]}), flush=True)
    if "defaults" in results:
        results["target_met"] = results["defaults"]["test_accuracy"] >= 75.0
    path = ROOT / "bench" / "results" / "defaults.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
