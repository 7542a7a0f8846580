"""Sequence-labelling metrics: entity-level precision/recall/F1 (seqeval, strict IOB2: an entity counts
only with the right type and exact boundaries), token accuracy, and a word-level confusion matrix of
entity types (B-/I- folded: the type a word was given against the type it has)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def entity_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    from seqeval.metrics.v1 import precision_recall_fscore_support, unique_labels
    from seqeval.scheme import IOB2

    gold, predicted = [list(t) for t in gold], [list(t) for t in predicted]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-division on types absent from a small split: scored 0, as shown
        p, r, f, _ = precision_recall_fscore_support(gold, predicted, average="micro", scheme=IOB2, zero_division=0)
        per = precision_recall_fscore_support(gold, predicted, average=None, scheme=IOB2, zero_division=0)
    types = unique_labels(gold, predicted, IOB2)  # the order of seqeval's per-type arrays
    per_class = {
        t: {"precision": float(p_), "recall": float(r_), "f1": float(f_), "support": int(s_)}
        for t, p_, r_, f_, s_ in zip(types, *per, strict=True)
    }
    flat_gold = [t for tags in gold for t in tags]
    flat_pred = [t for tags in predicted for t in tags]
    accuracy = float(np.mean([a == b for a, b in zip(flat_gold, flat_pred, strict=True)])) if flat_gold else 0.0
    return {
        "f1": float(f),
        "precision": float(p),
        "recall": float(r),
        "token_accuracy": accuracy,
        "f1_macro": float(np.mean([m["f1"] for m in per_class.values()])) if per_class else 0.0,
        "per_class": per_class,
        "confusion_matrix": type_confusion(flat_gold, flat_pred),
        "n": len(gold),
        "tokens": len(flat_gold),
    }


def type_confusion(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    labels = [*sorted({t[2:] for t in [*gold, *predicted] if t != "O"}), "O"]
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g[2:] if g != "O" else "O"], index[p[2:] if p != "O" else "O"]] += 1
    return {"labels": labels, "matrix": matrix.tolist()}
