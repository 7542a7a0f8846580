"""Can the explanations, calibration and label-error search be trusted? SST-2 (not a timed test; figures printed and
saved). Each part is independent and appends its figures to --json-out.

  model        trains the model the other parts judge: MiniLM, full fine-tuning, --train-rows seeded SST-2 training
               sentences (validation carved from them: the temperature is fitted there), SST-2 dev as test.
  calibration  ECE (15 bins), classwise ECE and Brier on SST-2 dev at temperature 1 and at the fitted temperature;
               accuracy is the same at both. Target: ECE <= 0.02 after.
  faithfulness ERASER comprehensiveness (DeYoung et al., 2020): on SST-2 dev, the drop in the predicted class's
               probability when each example's top 20 % attributed words are deleted, against deleting 20 % of its
               words at random (mean of 3 draws). Target: top-attributed drop >= 2x the random drop.
  labels       flips 10 % of the labels of a seeded --label-rows SST-2 training subset (uniformly at random); the
               precision and recall of the flagged rows against the flips, for the fast path (and with
               --fine-tune-folds, the fine-tuned path). Target: precision >= 0.7 at recall >= 0.6. Then dev accuracy
               of training on the noisy set, on it without the flagged rows, and on the clean set.

Usage: python bench/trust.py [--parts model,calibration,faithfulness,labels] [--train-rows 8000]
       [--label-rows 10000] [--fine-tune-path] [--json-out bench/results/inspect-cpu.json]
Reads ../shared/data/sst2 (or $TRANSFERLM_DATA/sst2); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path, and this file's name would shadow the standard library's
# inspect module for every import below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "sst2"


def sst2(split: str) -> list[dict]:
    """Rows of an SST-2 split, labels as the file has them ("0" negative, "1" positive)."""
    with open(DATA / f"{split}.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"text": r["sentence"], "label": r["label"]} for r in rows]


def write_tsv(path: Path, rows: list[dict]) -> Path:
    """Rows in SST-2's own layout (sentence, label): the runs read every file with the same data settings."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["sentence", "label"], delimiter="\t", quoting=csv.QUOTE_NONE,
                                escapechar="\\")
        writer.writeheader()
        writer.writerows({"sentence": r["text"], "label": r["label"]} for r in rows)
    return path


SST2_COLUMNS = {"format": "tsv", "text_column": "sentence", "label_column": "label"}


def train_run(train: Path, output: Path, seed: int, epochs: float) -> Path:
    import transferlm

    config = {"model": {"name": "minilm"}, "task": {"type": "classification"},
              "data": {"train": str(train), "test": str(DATA / "dev.tsv"), **SST2_COLUMNS},
              "train": {"epochs": epochs, "seed": seed, "progress": False}, "output": str(output)}
    return transferlm.train(config, overwrite=True).run_dir


def part_model(args, work: Path) -> dict:
    rows = sst2("train")
    random.Random(args.seed).shuffle(rows)
    path = write_tsv(work / "train.tsv", rows[: args.train_rows])
    began = time.time()
    run = train_run(path, args.run_dir, args.seed, args.epochs)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"run": str(run), "train_rows": args.train_rows, "epochs": args.epochs,
            "seconds": round(time.time() - began, 1), "dev_accuracy": metrics["test"]["accuracy"],
            "calibration_fit": metrics["training"].get("calibration")}


def part_calibration(args, work: Path) -> dict:
    import torch

    import transferlm
    from transferlm.evaluation.calibration import calibration_metrics

    predictor = transferlm.load(args.run_dir)
    records = predictor.read(DATA / "dev.tsv")
    features = predictor.features(records, with_labels=True)
    logits, targets = predictor.task.document_logits(predictor.outputs(features), features)
    y = targets.numpy()
    raw = torch.softmax(logits, -1).numpy()
    scaled, _ = predictor.task.decide(logits)
    return {"temperature": predictor.task.temperature, "at_temperature_1": calibration_metrics(raw, y),
            "at_fitted_temperature": calibration_metrics(scaled, y),
            "accuracy_at_1": float((raw.argmax(1) == y).mean()),
            "accuracy_fitted": float((scaled.argmax(1) == y).mean()),
            "noise_floor": _ece_noise_floor(scaled, args.seed),
            "cross_fitted_on_dev": _cross_fitted(logits, targets, args.seed)}


def _ece_noise_floor(probs, seed: int, draws: int = 200) -> dict:
    """The ECE a perfectly calibrated model with these very confidences would show on this many examples: labels drawn
    from the model's own probabilities, so every gap is sampling noise. A measured ECE near it cannot be told from
    perfect calibration with this test set."""
    import numpy as np

    from transferlm.evaluation.calibration import expected_calibration_error

    rng = np.random.default_rng(seed)
    eces = []
    for _ in range(draws):
        drawn = np.array([rng.choice(len(p), p=p / p.sum()) for p in probs])
        eces.append(expected_calibration_error(probs, drawn))
    eces = np.sort(np.array(eces))
    return {"draws": draws, "mean": float(eces.mean()), "p95": float(eces[int(0.95 * draws) - 1])}


def _cross_fitted(logits, targets, seed: int) -> dict:
    """Temperature fitted where the test sentences come from: dev split in two seeded halves, T fitted on each half and
    applied to the other, ECE of the pooled held-out probabilities. SST-2's training rows are phrases and its dev rows
    whole sentences, so a temperature fitted on validation carved from train may not carry over."""
    import torch

    from transferlm.evaluation.calibration import calibration_metrics, fit_temperature

    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    halves = [order[: len(order) // 2], order[len(order) // 2:]]
    probs = torch.empty(logits.shape, dtype=torch.double)
    temperatures = []
    for fit, apply in (halves, halves[::-1]):
        t = fit_temperature(logits[fit], targets[fit])
        temperatures.append(t)
        probs[apply] = torch.softmax(logits[apply].double() / t, -1)
    y = targets.numpy()
    return {"temperatures": temperatures, **calibration_metrics(probs.numpy(), y),
            "accuracy": float((probs.numpy().argmax(1) == y).mean())}


def part_faithfulness(args, work: Path) -> dict:
    import transferlm
    from transferlm.inference.explain import ExplainSettings

    predictor = transferlm.load(args.run_dir)
    texts = [r["text"] for r in sst2("dev")][: args.faithfulness_rows]
    began = time.time()
    explained = predictor.explain(texts, ExplainSettings(steps=args.steps))
    seconds = time.time() - began
    rng = random.Random(args.seed)
    originals, top_cut, random_cut = [], [], [[], [], []]
    deltas = []
    for text, result in zip(texts, explained, strict=True):
        first = result["explanations"][0]
        words = first["words"]
        k = max(1, round(0.2 * len(words)))
        top = set(sorted(range(len(words)), key=lambda i: -words[i]["score"])[:k])
        originals.append((text, first["target"]))
        top_cut.append(" ".join(w["word"] for i, w in enumerate(words) if i not in top))
        for draw in range(3):
            chosen = set(rng.sample(range(len(words)), k))
            random_cut[draw].append(" ".join(w["word"] for i, w in enumerate(words) if i not in chosen))
        deltas.append(first["delta"] / max(abs(first["output"] - first["baseline_output"]), 1e-9))

    def probability(batch: list[str]) -> list[float]:
        predictions = predictor.predict(batch)
        return [p["probabilities"][str(target)] for p, (_, target) in zip(predictions, originals, strict=True)]

    base = probability([t for t, _ in originals])
    top_drop = [b - a for b, a in zip(base, probability(top_cut), strict=True)]
    random_drops = []
    for draw in random_cut:
        random_drops.append(sum(b - a for b, a in zip(base, probability(draw), strict=True)) / len(base))
    mean_top = sum(top_drop) / len(top_drop)
    mean_random = sum(random_drops) / len(random_drops)
    return {"examples": len(texts), "steps": args.steps, "explain_seconds": round(seconds, 1),
            "comprehensiveness_top20": mean_top, "comprehensiveness_random20": mean_random,
            "random_draws": random_drops, "ratio": mean_top / mean_random if mean_random else None,
            "median_relative_delta": sorted(deltas)[len(deltas) // 2]}


def part_labels(args, work: Path) -> dict:
    import transferlm
    from transferlm.experiments.label_errors import find_label_errors

    rows = sst2("train")
    random.Random(args.seed + 7).shuffle(rows)
    rows = rows[: args.label_rows]
    rng = random.Random(args.seed + 8)
    flipped = set(rng.sample(range(len(rows)), len(rows) // 10))
    noisy = [{**r, "label": ({"0": "1", "1": "0"}[r["label"]] if i in flipped else r["label"])}
             for i, r in enumerate(rows)]
    noisy_file = write_tsv(work / "noisy.tsv", noisy)
    clean_file = write_tsv(work / "clean.tsv", rows)
    run = Path(args.run_dir)
    result = {"rows": len(rows), "flipped": len(flipped)}
    paths = ["fast"] + (["fine-tune"] if args.fine_tune_path else [])
    for path in paths:
        began = time.time()
        train = {"epochs": args.label_epochs} if path == "fine-tune" and args.label_epochs else None
        found = find_label_errors(run, noisy_file, work / f"errors-{path}", folds=5, path=path, seed=args.seed,
                                  train=train)
        with open(work / f"errors-{path}" / "label_errors.csv", encoding="utf-8") as f:
            ranked = sorted(csv.DictReader(f), key=lambda r: float(r["score"]))  # most suspect first
        order = [int(r["line"]) - 2 for r in ranked]  # file line n (after the header) is row n - 2
        lines = set(order)
        hits = len(lines & flipped)
        result[path] = {"flagged": len(lines), "precision": hits / len(lines) if lines else None,
                        "recall": hits / len(flipped), "seconds": round(time.time() - began, 1),
                        "out_of_fold_accuracy": found["out_of_fold_accuracy"], "fold_train": train,
                        "precision_at_recall_0.6": _precision_at_recall(order, flipped, 0.6)}
    if args.retrain:
        sets = [("noisy", noisy_file, None)]
        sets += [(f"noisy_without_flagged_{path}", noisy_file, work / f"errors-{path}" / "label_errors.csv")
                 for path in paths]
        for name, train, exclude in sets + [("clean", clean_file, None)]:
            config = {"model": {"name": "minilm"}, "task": {"type": "classification"},
                      "data": {"train": str(train), "exclude": str(exclude) if exclude else None, **SST2_COLUMNS},
                      "train": {"epochs": args.epochs, "seed": args.seed, "progress": False},
                      "output": str(work / f"retrain-{name}")}
            result[f"dev_accuracy_{name}"] = _dev_accuracy(transferlm.train(config, overwrite=True).run_dir)
    return result


def _precision_at_recall(order: list[int], flipped: set[int], recall: float) -> float | None:
    """Precision of the most suspect rows, taken in score order until they hold ``recall`` of the planted flips;
    None when all the flagged rows together hold less."""
    hits = 0
    for k, row in enumerate(order, start=1):
        hits += row in flipped
        if hits >= recall * len(flipped):
            return hits / k
    return None


def _dev_accuracy(run: Path) -> float:
    import transferlm

    predictor = transferlm.load(run)
    rows = sst2("dev")
    predictions = predictor.predict([r["text"] for r in rows])
    return sum(str(p["label"]) == r["label"] for p, r in zip(predictions, rows, strict=True)) / len(rows)


PARTS = {"model": part_model, "calibration": part_calibration, "faithfulness": part_faithfulness,
         "labels": part_labels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="model,calibration,faithfulness,labels")
    parser.add_argument("--train-rows", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--label-rows", type=int, default=10000)
    parser.add_argument("--faithfulness-rows", type=int, default=872)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--fine-tune-path", action="store_true", help="labels: also the fine-tuned path (5 trainings)")
    parser.add_argument("--retrain", action="store_true", help="labels: retrain on noisy, cleaned and clean sets")
    parser.add_argument("--label-epochs", type=float, help="labels: epochs of the fine-tuned path's fold runs "
                        "(default: the run's own)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--run-dir", type=Path, default=Path(tempfile.gettempdir()) / "transferlm-bench-inspect-run")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "inspect-cpu.json")
    args = parser.parse_args()
    if not (DATA / "train.tsv").is_file():
        print(f"SST-2 not found at {DATA}: skipping (set TRANSFERLM_DATA to the folder holding sst2/)")
        return 0
    results = json.loads(args.json_out.read_text()) if args.json_out.is_file() else {}
    with tempfile.TemporaryDirectory() as name:
        for part in [p for p in args.parts.split(",") if p]:
            began = time.time()
            result = PARTS[part](args, Path(name))
            result["wall_seconds"] = round(time.time() - began, 1)
            print(part, json.dumps(result), flush=True)
            results[part] = result
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
