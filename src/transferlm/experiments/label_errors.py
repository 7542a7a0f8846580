"""Suspected label errors in a labelled file: confident learning (Northcutt et al., 2021, "Confident Learning:
Estimating Uncertainty in Dataset Labels"; the ``cleanlab`` library) on out-of-fold predicted probabilities.

Every example's probabilities come from a model that never saw it: the file is split into ``folds`` stratified
folds, and each fold is predicted by a model trained on the others.

- ``fast``: the run's pretrained backbone (not the fine-tuned model, which has seen these labels) gives each
  example a fixed feature vector once (windows averaged for a long input); each fold fits a logistic regression on
  them. Seconds after the features.
- ``fine-tune``: each fold trains the run's own recipe (model, task and strategy settings) through the child runner
  of ``compare``, and predicts its held-out fold. As slow as k trainings, and closer to the model being judged.

A flagged example has a given label that the out-of-fold probabilities contradict beyond the per-class confidence
thresholds of confident learning; its score is cleanlab's self-confidence (the probability of the given label,
lower is more suspect), and the suggested label is the most probable one.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from transferlm.config.load import build_config, config_to_dict
from transferlm.data.records import stratified_split
from transferlm.errors import ConfigError, DataError
from transferlm.experiments.config import MemberConfig
from transferlm.experiments.jobs import Job, job_config, run_job
from transferlm.experiments.splits import SplitFiles, write_records
from transferlm.extras import require
from transferlm.runs.predictor import Predictor, load
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)
CSV_NAME = "label_errors.csv"


def find_label_errors(run: Path, data: Path, out: Path, folds: int = 5, path: Literal["fast", "fine-tune"] = "fast",
                      seed: int = 0, train: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flag suspected label errors of ``data`` (out-of-fold, by the recipe of the run at ``run``); write
    ``label_errors.csv`` into ``out`` and return the summary. ``train``: train settings that replace the run's in the
    fine-tune path's fold runs (``{"epochs": 2}``)."""
    require("cleanlab", "inspect", "finding label errors")
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    predictor = load(run)
    task = predictor.task
    if task.name != "classification" or task.multi_label:
        raise ConfigError(f"--label-errors: label errors are searched for single-label classification; this run is "
                          f"{'multi-label classification' if task.name == 'classification' else task.name}")
    records = predictor.read(data)
    problems = task.check_labels({str(data): records})
    if problems:
        raise DataError(problems)
    labels = np.array([task.target(r) for r in records])
    assignment = fold_assignment(labels, folds, seed, task.label_map.labels, data)
    if path == "fast":
        probs = probe_probabilities(_backbone_features(predictor, records), labels, assignment,
                                    len(task.label_map.labels))
    else:
        probs = _fine_tuned_probabilities(predictor, records, assignment, folds, out / "folds", seed, train or {})
    flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probs)
    names = task.label_map.labels
    rows = [{"line": records[i].line, "text": records[i].text, "label": task.label_map.external(names[labels[i]]),
             "suggested": task.label_map.external(names[int(probs[i].argmax())]), "score": round(float(quality[i]), 6)}
            for i in flagged]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CSV_NAME, _csv(rows))
    accuracy = float((probs.argmax(axis=1) == labels).mean())
    log.info("label errors (%s, %d folds): %d of %d examples flagged; out-of-fold accuracy %.4f", path, folds,
             len(rows), len(records), accuracy)
    return {"path": path, "folds": folds, "examples": len(records), "flagged": len(rows),
            "out_of_fold_accuracy": accuracy, "csv": str(out / CSV_NAME), "top": rows[:20]}


def fold_assignment(labels: np.ndarray, folds: int, seed: int, names: Sequence[str], data: Path) -> np.ndarray:
    """Each example's fold: stratified, seeded. A class with fewer examples than folds is an error."""
    if folds < 2:
        raise ConfigError(f"--label-error-folds: {folds}; out-of-fold probabilities need at least 2 folds")
    counts = Counter(labels.tolist())
    small = {names[k]: n for k, n in counts.items() if n < folds}
    if small:
        listed = ", ".join(f"{name!r} has {n}" for name, n in sorted(small.items()))
        raise DataError(f"{data}: too few examples per class for {folds} folds ({listed}); every class needs at "
                        "least one example per fold: lower --label-error-folds or add examples")
    from sklearn.model_selection import StratifiedKFold

    assignment = np.zeros(len(labels), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[held_out] = k
    return assignment


def probe_probabilities(features: np.ndarray, labels: np.ndarray, assignment: np.ndarray,
                        n_classes: int) -> np.ndarray:
    """Out-of-fold class probabilities of a logistic regression on fixed features (standardised per fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    probs = np.zeros((len(labels), n_classes))
    for k in sorted(set(assignment.tolist())):
        train, held = assignment != k, assignment == k
        scaler = StandardScaler().fit(features[train])
        model = LogisticRegression(max_iter=2000).fit(scaler.transform(features[train]), labels[train])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(scaler.transform(features[held]))
    return probs


def _backbone_features(predictor: Predictor, records) -> np.ndarray:
    """One fixed vector per record from the run's pretrained backbone (the task's feature head; a long input's
    windows averaged)."""
    from transferlm.inference.batches import map_batches, on_inputs
    from transferlm.models.resolve import resolve_model

    task, tokenizer = predictor.task, predictor.tokenizer
    model = task.build_model(resolve_model(predictor.saved_config["model"]["name"]).path, tokenizer).eval()
    head = task.feature_head(model)
    if head is None:
        raise ConfigError(f"--label-error-path fast: no fixed features for a {type(model).__name__}; use "
                          "--label-error-path fine-tune")
    features = predictor.features(records, with_labels=False)
    with torch.no_grad():
        rows = map_batches(on_inputs(head.extract, task), task, features, tokenizer.pad_token_id, predictor.batch_size)
    per_record = torch.split(torch.stack(rows).float(), task.window_counts(features))
    return torch.stack([windows.mean(dim=0) for windows in per_record]).numpy()


def _fine_tuned_probabilities(predictor: Predictor, records, assignment: np.ndarray, folds: int, root: Path,
                              seed: int, train_settings: dict[str, Any]) -> np.ndarray:
    """Each fold predicted by the run's own recipe trained on the other folds (validation carved from them)."""
    task = predictor.task
    base = build_config({**predictor.saved_config, "output": str(root)})
    # The run's strategy settings, resolved ones included (job_config starts a member from the strategy's name).
    strategy = {f"strategy.{k}": v for k, v in config_to_dict(base)["strategy"].items() if k != "name"}
    probs = np.zeros((len(records), len(task.label_map.labels)))
    for k in range(folds):
        job_dir = root / f"fold-{k}"
        rest = [records[i] for i in np.flatnonzero(assignment != k)]
        train, validation = stratified_split(rest, task.split_key, base.data.validation_split, seed)
        files = SplitFiles(write_records(job_dir / "train.jsonl", train, task),
                           write_records(job_dir / "validation.jsonl", validation, task), None, "validation",
                           len(validation), task.read_back_keys())
        job = Job(MemberConfig(name=base.strategy.name, label=f"fold {k}", set=strategy), seed, job_dir,
                  files.train, len(train))
        # the folds are internal runs: they report to no tracker of the run they copy
        result = run_job(job, job_config(base, job, files, {"report_to": [], **train_settings}))
        if "error" in result:
            raise DataError(f"label errors: the training of fold {k} failed ({result['error']})")
        fold = load(Path(result["run_dir"]))
        held = np.flatnonzero(assignment == k)
        features = fold.features([records[i] for i in held], with_labels=False)
        logits, _ = fold.task.documents(fold.outputs(features), features)
        probs[held] = fold.task.decide(logits)[0]
    return probs


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["line", "text", "label", "suggested", "score"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
