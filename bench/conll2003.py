"""CoNLL-2003 English NER benchmark for transferlm (not a timed test; figures are printed and saved as JSON).

Parts:
  full     full fine-tuning of the bundled MiniLM on CoNLL-2003 train; validation picks the checkpoint;
           entity F1 (seqeval, strict IOB2) on test, per type, wall time, peak RSS.
  compare  `transferlm compare` on a 2,000-sentence subset of train (the first 2,000 sentences, so the
           subset is fixed): frozen, lora, full and the CRF feature baseline; test F1.

Usage: python bench/conll2003.py [--parts full,compare] [--epochs 5] [--lr 1e-4] [--out DIR]
(the closing note of the NER issue ran `--parts full` with the defaults and `--parts compare --epochs 3`)
Reads ../shared/data/conll2003 (or $TRANSFERLM_DATA/conll2003); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "conll2003"
SUBSET = 2000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def base_config(out: Path, train_file: Path, epochs: float, lr: float) -> dict:
    return {
        "model": {"name": "minilm", "max_length": 128},
        "task": {"type": "ner"},
        "data": {"train": str(train_file), "validation": str(DATA / "valid.txt"), "test": str(DATA / "test.txt")},
        "train": {"epochs": epochs, "batch_size": 32, "lr": lr, "progress": False},
        "output": str(out),
    }


def part_full(out: Path, epochs: float, lr: float) -> dict:
    import transferlm

    config = base_config(out / "full", DATA / "train.txt", epochs, lr)
    began = time.perf_counter()
    result = transferlm.train(config, overwrite=True)
    s = result.summary
    return {
        "part": "full",
        "test_f1": result.test["f1"],
        "test_precision": result.test["precision"],
        "test_recall": result.test["recall"],
        "test_per_type_f1": {k: v["f1"] for k, v in result.test["per_class"].items()},
        "validation_f1": s.validation["f1"],
        "best_step": s.best_step,
        "steps": s.steps,
        "wall_s": round(time.perf_counter() - began, 1),
        "train_s": s.train_seconds,
        "train_samples_per_s": s.train_samples_per_s,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config": config,
    }


def first_sentences(n: int, target: Path) -> Path:
    """The first ``n`` sentences of train.txt (a CoNLL file), written to ``target``."""
    kept, count, blank = [], 0, True
    for line in (DATA / "train.txt").read_text().splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            kept.append(line)
            blank = True
            continue
        if blank:
            count += 1
            blank = False
            if count > n:
                break
        kept.append(line)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(kept) + "\n")
    return target


def part_compare(out: Path, epochs: float, lr: float) -> dict:
    from transferlm.config.load import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    train = first_sentences(SUBSET, out / "subset" / "train.conll")
    config = build_config(base_config(out / "compare", train, epochs, lr))
    members = [
        {"name": "frozen", "set": {"train.lr": 1e-3}},
        {"name": "lora", "set": {"train.lr": 2e-3, "strategy.r": 16,
                                 "strategy.target_modules": ["query", "key", "value"]}},
        "full",
        "crf",
    ]
    began = time.perf_counter()
    report = compare(config, CompareSettings(members=members, seeds=[0]), overwrite=False)
    return {"part": "compare", "wall_s": round(time.perf_counter() - began, 1), "report": report}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="full,compare")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-conll2003"))
    args = parser.parse_args()
    if not (DATA / "train.txt").is_file():
        print(f"CoNLL-2003 not found at {DATA}; set TRANSFERLM_DATA or see ../shared/data/README.md. Skipping.")
        return 0
    import logging

    logging.basicConfig(level=logging.INFO, format="transferlm: %(message)s")
    results = []
    for part in args.parts.split(","):
        result = {"full": part_full, "compare": part_compare}[part](args.out, args.epochs, args.lr)
        results.append(result)
        print(json.dumps(result, indent=2, default=str))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
