"""`transferlm inspect`: can this model be trusted on this data? Calibration, confidently wrong examples and the
metric per slice, in one report (JSON, Markdown, HTML with the reliability diagram).

Calibration (classification, single-label) is shown as the model predicts: with the temperature fitted at the end
of training, and as trained (temperature 1) beside it. Slices need a metric that is a mean over examples
(``Task.example_scores``): classification's accuracy, QA's F1.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from transferlm.config.selected import CommandSettings, flag
from transferlm.data.records import read_data_table
from transferlm.errors import ConfigError, DataError
from transferlm.evaluation.calibration import ECE_BINS, binned_gap, calibration_metrics
from transferlm.evaluation.slices import length_buckets, slices
from transferlm.experiments.label_errors import find_label_errors
from transferlm.experiments.report import html_table, markdown_table
from transferlm.runs.predictor import Predictor, load
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)
DIAGRAM = "reliability.png"


class InspectSettings(CommandSettings):
    section = "inspect"
    slice_columns: list[str] = Field(
        [], description="Columns of the data file to slice by as well (a source, a domain, a group attribute); "
        "the label and the input length are always sliced by.", json_schema_extra=flag("--slice-column"),
    )
    top: int = Field(20, ge=0, description="Confidently wrong examples listed (classification).")
    length_buckets: int = Field(4, ge=1, description="Input-length slices: this many quantile buckets.")
    label_errors: bool = Field(
        False, description="Also search the file for suspected label errors (confident learning on out-of-fold "
        "probabilities; single-label classification); writes label_errors.csv, which `train --exclude` takes.",
    )
    label_error_folds: int = Field(5, ge=2, description="Folds for the out-of-fold probabilities.")
    label_error_path: Literal["fast", "fine-tune"] = Field(
        "fast", description="fast: a logistic regression per fold on the pretrained backbone's fixed features "
        "(seconds); fine-tune: the run's own recipe trained per fold (k trainings).",
    )


def inspect_run(run: Path, data: Path, out: Path, settings: InspectSettings | None = None) -> dict[str, Any]:
    """Inspect the run at ``run`` on the labelled file ``data``; write the report into ``out``; return it."""
    settings = settings or InspectSettings()
    predictor = load(run)
    task = predictor.task
    records = predictor.read(data)
    columns = _slice_columns(predictor, data, records, settings.slice_columns)
    problems = task.check_labels({str(data): records})
    if problems:
        raise DataError(problems)
    features = predictor.features(records, with_labels=True)
    outputs = predictor.outputs(features)
    metric = task.default_metric
    report: dict[str, Any] = {"run": str(run), "data": str(data), "n": len(records), "metric": metric,
                              "metrics": _scalars(task.metrics(outputs, features))}
    if _single_label(predictor):
        logits, targets = task.document_logits(outputs, features)
        report |= _calibration(task, logits, targets, out)
        report["confidently_wrong"] = _confidently_wrong(task, logits, targets, records, settings.top)
    if task.name == "ner":
        report["entity_calibration"] = _entity_calibration(task, outputs, features)
    scores = task.example_scores(outputs, features)
    if scores is None:
        if settings.slice_columns:
            raise ConfigError(f"--slice-column: the {task.name} metric ({metric}) is no mean over examples, so it "
                              "cannot be split into slices; slices need classification (single-label) or qa")
    else:
        groupings: dict[str, Sequence[Any]] = {}
        if hasattr(task, "labels_of"):
            groupings["label"] = ["|".join(task.labels_of(r)) for r in records]
        lengths = task.input_lengths(predictor.tokenizer, records)
        if lengths is not None:
            groupings["length"] = length_buckets(lengths, settings.length_buckets)
        groupings |= columns
        found = slices(scores, groupings)
        report["slices"] = [s.as_dict() for s in found]
        report["flagged"] = [s.sentence(metric) for s in found if s.flagged]
    if settings.label_errors:
        report["label_errors"] = find_label_errors(run, data, out, settings.label_error_folds,
                                                   settings.label_error_path, seed=0)
    _write(report, out)
    return report


def _single_label(predictor: Predictor) -> bool:
    return predictor.task.name == "classification" and not predictor.task.multi_label


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _slice_columns(predictor: Predictor, data: Path, records, names: Sequence[str]) -> dict[str, list[Any]]:
    """Each named column's value for each record, read from the file's rows (records keep only what the task
    reads)."""
    if not names:
        return {}
    table = read_data_table(data, predictor.data_config)
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise DataError(f"{data}: no column {', '.join(map(repr, missing))} to slice by; its columns are "
                        f"{', '.join(table.columns)}")
    by_line = dict(zip(table.lines, table.rows, strict=True))
    return {name: [by_line[r.line].get(name) for r in records] for name in names}


def _calibration(task, logits: torch.Tensor, targets: torch.Tensor, out: Path) -> dict[str, Any]:
    y = targets.numpy()
    shown, _ = task.decide(logits)  # with the run's temperature, as predict shows them
    raw = torch.softmax(logits.float(), dim=-1).numpy()
    out.mkdir(parents=True, exist_ok=True)
    bins = _class_reliability(shown, y)
    _diagram(bins, _class_reliability(raw, y), out / DIAGRAM, task.temperature)
    return {"calibration": {"temperature": task.temperature, "bins": ECE_BINS,
                            "as_predicted": calibration_metrics(shown, y),
                            "at_temperature_1": calibration_metrics(raw, y)},
            "reliability": bins}


def _reliability(confidence: np.ndarray, correct: np.ndarray) -> list[dict[str, Any]]:
    """Per confidence bin: how many examples, their mean confidence and their accuracy."""
    edges = np.linspace(0, 1, ECE_BINS + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, ECE_BINS - 1)
    rows = []
    for k in range(ECE_BINS):
        members = which == k
        if members.any():
            rows.append({"low": float(edges[k]), "high": float(edges[k + 1]), "n": int(members.sum()),
                         "confidence": float(confidence[members].mean()), "accuracy": float(correct[members].mean())})
    return rows


def _class_reliability(probs: np.ndarray, targets: np.ndarray) -> list[dict[str, Any]]:
    return _reliability(probs.max(axis=1), (probs.argmax(axis=1) == targets).astype(float))


def _diagram(shown: list[dict], raw: list[dict], path: Path, temperature: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", label="calibrated")
    for bins, name, color in ((raw, "temperature 1", "#ff7f0e"), (shown, f"temperature {temperature:.2f}",
                                                                       "#1f77b4")):
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color=color, label=name)
    ax.set_xlabel("confidence (mean per bin)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability, {ECE_BINS} equal-width bins", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _entity_calibration(task, outputs, features) -> dict[str, Any]:
    """NER: each predicted entity's score (the mean probability of its tags) against whether it is right (a gold
    entity with the same words and type): ECE over entities and the reliability bins."""
    from transferlm.data import tagging

    confidence, correct = [], []
    for logp, gold in task.word_outputs(outputs, features):
        ids = task.decode(logp)
        truth = {(s.start, s.end, s.label) for s in tagging.spans([task.labels[t] for t in gold])}
        probs = np.exp(logp[np.arange(len(ids)), ids])
        for span in tagging.spans([task.labels[t] for t in ids]):
            confidence.append(float(probs[span.start:span.end].mean()))
            correct.append(float((span.start, span.end, span.label) in truth))
    conf, right = np.array(confidence), np.array(correct)
    if not len(conf):
        return {"entities": 0}
    return {"entities": len(conf), "precision": float(right.mean()), "ece": binned_gap(conf, right),
            "bins": ECE_BINS, "reliability": _reliability(conf, right)}


def _confidently_wrong(task, logits: torch.Tensor, targets: torch.Tensor, records, top: int) -> list[dict]:
    probs, decided = task.decide(logits)
    labels = task.label_map.labels
    wrong = [i for i in range(len(records)) if decided[i] != int(targets[i])]
    wrong.sort(key=lambda i: -float(probs[i, decided[i]]))
    return [{"line": records[i].line, "text": records[i].text, "label": labels[int(targets[i])],
             "predicted": labels[int(decided[i])], "probability": round(float(probs[i, decided[i]]), 4)}
            for i in wrong[:top]]


def _write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "inspect.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "inspect.md", _markdown(report))
    atomic_write_text(out / "inspect.html", _html(report, out))


def _slice_table(report: dict[str, Any]) -> list[list[str]]:
    table = [["by", "slice", "n", report["metric"], "95 % CI", "rest", "p", "flag"]]
    for s in report.get("slices", []):
        rest = "" if s["rest"] is None else f"{s['rest']:.3f}"
        p = "" if s["p_value"] is None else f"{s['p_value']:.2g}"
        table.append([s["grouping"], s["value"], str(s["n"]), f"{s['metric']:.3f}",
                      f"{s['low']:.3f}-{s['high']:.3f}", rest, p, "worse" if s["flagged"] else ""])
    return table


def _wrong_table(report: dict[str, Any]) -> list[list[str]]:
    table = [["line", "label", "predicted", "probability", "text"]]
    for w in report.get("confidently_wrong", []):
        text = w["text"] if len(w["text"]) <= 160 else w["text"][:157] + "..."
        table.append([str(w["line"]), w["label"], w["predicted"], f"{w['probability']:.3f}", text])
    return table


def _errors_table(report: dict[str, Any]) -> list[list[str]]:
    table = [["line", "label", "suggested", "score", "text"]]
    for row in report["label_errors"]["top"]:
        text = row["text"] if len(row["text"]) <= 160 else row["text"][:157] + "..."
        table.append([str(row["line"]), str(row["label"]), str(row["suggested"]), f"{row['score']:.3f}", text])
    return table


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"{report['data']}: {report['n']} examples, {report['metric']} {report['metrics'][report['metric']]:.4f}"]
    calibration = report.get("calibration")
    if calibration:
        shown, raw = calibration["as_predicted"], calibration["at_temperature_1"]
        lines.append(f"calibration ({calibration['bins']} bins): ECE {shown['ece']:.4f} at the run's temperature "
                     f"{calibration['temperature']:.3f} ({raw['ece']:.4f} at temperature 1); classwise ECE "
                     f"{shown['classwise_ece']:.4f}; Brier {shown['brier']:.4f}")
    entities = report.get("entity_calibration")
    if entities and entities.get("entities"):
        lines.append(f"entity scores ({entities['bins']} bins): ECE {entities['ece']:.4f} over {entities['entities']} "
                     f"predicted entities, {entities['precision']:.1%} of them right")
    errors = report.get("label_errors")
    if errors:
        lines.append(f"suspected label errors ({errors['path']}, {errors['folds']} folds): {errors['flagged']} of "
                     f"{errors['examples']} examples, in {errors['csv']} (out-of-fold accuracy "
                     f"{errors['out_of_fold_accuracy']:.4f})")
    flagged = report.get("flagged")
    if flagged is not None:
        lines += ([f"worse than the rest beyond its noise: {f}" for f in flagged] if flagged
                  else ["no slice is worse than the rest beyond its noise (two-sided z-test, p < 0.05)"])
    return lines


def _markdown(report: dict[str, Any]) -> str:
    parts = ["# transferlm inspect", "", *[f"- {line}" for line in summary_lines(report)], ""]
    if "slices" in report:
        parts += ["## Slices", "", markdown_table(_slice_table(report)), ""]
    if "confidently_wrong" in report:
        parts += ["## Confidently wrong", "", markdown_table(_wrong_table(report)), ""]
    if "label_errors" in report:
        parts += ["## Suspected label errors (most suspect first)", "", markdown_table(_errors_table(report)), ""]
    return "\n".join(parts)


def _html(report: dict[str, Any], out: Path) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(report))
    body = f"<h1>transferlm inspect</h1><ul>{items}</ul>"
    if (out / DIAGRAM).is_file() and "calibration" in report:
        image = base64.b64encode((out / DIAGRAM).read_bytes()).decode()
        body += f"<h2>Calibration</h2><p><img src='data:image/png;base64,{image}' alt='reliability diagram'></p>"
    if "slices" in report:
        body += f"<h2>Slices</h2>{html_table(_slice_table(report))}"
    if "confidently_wrong" in report:
        body += f"<h2>Confidently wrong</h2>{html_table(_wrong_table(report))}"
    if "label_errors" in report:
        body += f"<h2>Suspected label errors</h2>{html_table(_errors_table(report))}"
    return ("<!doctype html><html><head><meta charset='utf-8'><title>transferlm inspect</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>" + body + "</body></html>\n")
