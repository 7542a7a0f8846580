"""SQuAD v1.1 extractive QA benchmark for transferlm (not a timed test; figures are printed and saved as JSON).

Only the SQuAD v1.1 dev set is available here, so this uses an article-disjoint split of it, fixed by
article order in the file: the first 34 articles train, the next 4 select the checkpoint (validation),
the last 10 are the test set. No article (so no context) is shared between the three.

Parts:
  full      full fine-tuning of the bundled MiniLM on the train articles; EM/F1 on the test articles,
            wall time, peak RSS.
  baseline  the sliding-window word-overlap answer finder (no learning) on the same split.

Usage: python bench/squad.py [--parts baseline,full] [--epochs 2] [--lr 1e-4] [--max-length 256] [--out DIR]
Reads ../shared/data/squad/dev-v1.1.json (or $TRANSFERLM_DATA/squad); exits 0 with a message when absent.
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
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "squad" / "dev-v1.1.json"
SPLIT = {"train": (0, 34), "validation": (34, 38), "test": (38, 48)}  # article index ranges [start, end)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_split(out: Path) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    document = json.loads(DATA.read_text(encoding="utf-8"))
    articles = document["data"]
    if len(articles) != 48:
        raise SystemExit(f"{DATA}: expected the 48 articles of SQuAD v1.1 dev, found {len(articles)}")
    files, counts = {}, {}
    for name, (a, b) in SPLIT.items():
        part = articles[a:b]
        path = out / "data" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": "1.1", "data": part}), encoding="utf-8")
        files[name] = path
        counts[name] = {"articles": len(part), "paragraphs": sum(len(x["paragraphs"]) for x in part),
                        "questions": sum(len(p["qas"]) for x in part for p in x["paragraphs"])}
    return files, counts


def config(out: Path, files: dict[str, Path], args) -> dict:
    train = {"epochs": args.epochs, "batch_size": 32, "lr": args.lr, "progress": False}
    if args.max_steps:
        train["max_steps"] = args.max_steps
    return {
        "model": {"name": "minilm", "max_length": args.max_length},
        "task": {"type": "qa", **({"stride": args.stride} if args.stride is not None else {})},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "test": str(files["test"])},
        "train": train,
        "output": str(out / "full"),
    }


def part_full(out: Path, files: dict[str, Path], args) -> dict:
    import transferlm

    settings = config(out, files, args)
    began = time.perf_counter()
    result = transferlm.train(settings, overwrite=True)
    s = result.summary
    return {
        "part": "full",
        "test_f1": result.test["f1"],
        "test_exact_match": result.test["exact_match"],
        "test_n": result.test["n"],
        "validation_f1": s.validation["f1"],
        "validation_exact_match": s.validation["exact_match"],
        "best_step": s.best_step,
        "steps": s.steps,
        "wall_s": round(time.perf_counter() - began, 1),
        "train_s": s.train_seconds,
        "train_samples_per_s": s.train_samples_per_s,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config": settings,
    }


def part_baseline(out: Path, files: dict[str, Path], args) -> dict:
    from transferlm.baselines import BASELINES
    from transferlm.config import DataConfig, task_settings
    from transferlm.tasks import build_task

    task = build_task(task_settings("qa"), DataConfig(train=files["train"]))
    records = {}
    for name, path in files.items():
        records[name], problems = task.read_records(path)
        assert not problems, problems
    result = BASELINES.get("overlap")(task, records["train"], {k: records[k] for k in ("validation", "test")}, 0)
    return {
        "part": "baseline",
        "test_f1": result.metrics["test"]["f1"],
        "test_exact_match": result.metrics["test"]["exact_match"],
        "validation_f1": result.metrics["validation"]["f1"],
        "chosen": result.chosen,
        "seconds": result.train_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="baseline,full")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="stop early (speed checks)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=None, help="task.stride (default: the task's, 128)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-squad"))
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"SQuAD v1.1 dev not found at {DATA}; set TRANSFERLM_DATA or see ../shared/data/README.md. Skipping.")
        return 0
    import logging

    logging.basicConfig(level=logging.INFO, format="transferlm: %(message)s")
    files, counts = write_split(args.out)
    print("article-disjoint split of SQuAD v1.1 dev:", json.dumps(counts))
    results = [{"part": "split", "articles": SPLIT, "counts": counts}]
    for part in args.parts.split(","):
        result = {"full": part_full, "baseline": part_baseline}[part](args.out, files, args)
        results.append(result)
        print(json.dumps(result, indent=2, default=str))
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
