"""A run's data profile (kept in metrics.json) and its model card: ``README.md`` in the Hugging Face format, YAML
metadata the Hub reads (base model, library, pipeline tag, data sets, ``model-index`` results) and sections a reader
needs to trust the model: recipe, data, results with their uncertainty, calibration, limitations and how to load it.

The card is written from the run directory's own files, so it says what the run holds and nothing else."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from transferlm.runs import layout

LIBRARY = "transferlm"


def data_profile(task, splits, encoded: dict[str, Any], files: dict[str, Any],
                 sources: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per split: examples, model inputs (windows count separately), input token lengths after cutting to the
    window, the labels' spread, and where it came from: the file's name (never this machine's path), or for data
    given in memory what it was (``data.sources``)."""
    sources = sources or {}
    profile: dict[str, Any] = {}
    for name in ("train", "validation", "test"):
        records, features = getattr(splits, name), encoded.get(name)
        if records is None or features is None:
            continue
        lengths = sorted(features.lengths)
        entry: dict[str, Any] = {"examples": len(records), "model_inputs": len(features),
                                 "file": Path(files[name]).name if files.get(name) and name not in sources else None}
        if name in sources:
            entry["source"] = sources[name]["kind"]
        if lengths:
            entry["input_tokens"] = {"median": lengths[len(lengths) // 2],
                                     "p95": lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)],
                                     "max": lengths[-1]}
        labels = task.label_profile(records)
        if labels:
            entry["labels"] = labels
        profile[name] = entry
    if "validation" in profile and not files.get("validation"):
        train = files.get("train")
        described = splits.validation_source.replace(str(train), "train") if train else splits.validation_source
        profile["validation"]["carved"] = described
    return profile


def interval(scores: list[float] | None, value: float | None) -> dict[str, float] | None:
    """A 95 % interval for a metric that is the mean of per-example scores: Wilson's for 0/1 scores (accuracy, exact
    match; it stays inside [0, 1] and does not collapse at 0 or 1), the normal approximation otherwise; None where
    the metric is not such a mean (micro F1 over entities, correlations)."""
    if not scores or value is None or len(scores) < 2:
        return None
    n = len(scores)
    mean = sum(scores) / n
    if abs(mean - value) > 1e-9:
        return None
    z = 1.96
    if all(s in (0, 1) for s in scores):
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return {"low": centre - half, "high": centre + half, "n": n}
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    return {"low": mean - z * sd / math.sqrt(n), "high": mean + z * sd / math.sqrt(n), "n": n}


def add_comparison(root: Path, comparison: dict[str, Any]) -> None:
    """Record ``transferlm compare``'s verdict on a member's run (in metrics.json) and rewrite its card with it."""
    from transferlm.training.checkpoint import atomic_write_text

    root = Path(root)
    if not layout.is_complete(root):
        return
    metrics = json.loads((root / layout.METRICS).read_text())
    metrics["comparison"] = comparison
    atomic_write_text(root / layout.METRICS, json.dumps(metrics, indent=2))
    atomic_write_text(root / layout.MODEL_CARD, model_card(root))


def _base_model(name: str, source: str) -> str | None:
    """The base model as the Hub names it: a hub id, a bundled model's hub id; a local folder has none."""
    from transferlm.models.resolve import BUNDLED

    if source == "bundled" and name in BUNDLED:
        return BUNDLED.get(name).hub_id or None
    return name if source == "hub" else None


COUNTS = ("n", "tokens")  # sizes reported beside the metrics, not metrics


def _card_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The figures of a metrics dict that are metrics: finite numbers, not counts (``n``, ``*_n``) or decision
    settings (QA's null thresholds)."""
    return {k: v for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k not in COUNTS
            and not k.endswith("_n") and "threshold" not in k}


def card_data(manifest: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any], name: str) -> dict[str, Any]:
    """The card's YAML metadata, from a run's manifest (run.json), metrics.json and config."""
    from transferlm.tasks import TASKS

    pipeline_tag = TASKS.get(manifest["task"]).pipeline_tag
    data = metrics.get("data", {})
    datasets = sorted({entry["file"] for entry in data.values() if entry.get("file")})
    base = _base_model(manifest["model"], manifest.get("model_source", ""))
    meta: dict[str, Any] = {"library_name": LIBRARY, "tags": [LIBRARY, manifest["task"],
                                                            f"strategy-{manifest['strategy']}"]}
    if pipeline_tag:  # a task from a plugin may serve no Hugging Face pipeline
        meta["pipeline_tag"] = pipeline_tag
    if base:
        meta["base_model"] = base
    if datasets:
        meta["datasets"] = datasets
    results = []
    for split in ("test", "validation"):
        figures = _card_metrics(metrics.get(split))
        if not figures:
            continue
        entry = data.get(split, {})
        dataset = entry.get("file") or entry.get("source") or entry.get("carved", split)
        results.append({
            "task": {"type": pipeline_tag or manifest["task"],
                     "name": (pipeline_tag or manifest["task"]).replace("-", " ").title()},
            "dataset": {"name": dataset, "type": dataset, "split": split},
            "metrics": [{"type": k, "value": round(float(v), 6), "name": f"{split} {k}"} for k, v in figures.items()],
        })
    if results:
        meta["metrics"] = sorted({m["type"] for r in results for m in r["metrics"]})
        meta["model-index"] = [{"name": name, "results": results}]
    meta["transferlm"] = {"task": manifest["task"], "strategy": manifest["strategy"],
                          "max_length": config.get("model", {}).get("max_length")}
    export = manifest.get("export")
    if export:  # an ONNX export directory: what ONNX Runtime loads
        meta["library_name"] = "onnx"
        meta["tags"] += ["onnx"] + (["int8"] if export.get("quantize") else [])
        meta["transferlm"]["export"] = {"quantize": export.get("quantize") or "fp32",
                                        "max_abs_logit_diff": export.get("max_abs_logit_diff")}
    return meta


def model_card(root: Path, manifest: dict[str, Any] | None = None, name: str | None = None) -> str:
    """The whole card of a run (or export) directory: YAML front matter and Markdown. ``name``: the model's name, by
    default the directory's (an export is written under a staging name first)."""
    root = Path(root)
    name = name or root.name
    manifest = manifest or json.loads((root / layout.MANIFEST).read_text())
    metrics = json.loads((root / layout.METRICS).read_text())
    config = yaml.safe_load((root / layout.CONFIG).read_text())
    meta = card_data(manifest, metrics, config, name)
    task, strategy = meta["transferlm"]["task"], meta["transferlm"]["strategy"]
    training, params = metrics.get("training", {}), metrics.get("parameters", {})
    base = meta.get("base_model") or Path(config["model"]["name"]).name  # a local folder: its name, not the path
    lines = [f"# {name}", "",
             f"A `{task}` model ({meta.get('pipeline_tag', task)}) transferred from `{base}` with transferlm, strategy "
             f"`{strategy}`.", ""]
    lines += ["## Recipe", "", "| setting | value |", "| --- | --- |"]
    trainable, total = params.get("trainable"), params.get("total")
    if trainable is not None and total:
        lines.append(f"| trainable parameters | {trainable:,} of {total:,} ({trainable / total:.2%}) |")
    train_cfg = config.get("train", {})
    for key in ("epochs", "lr", "batch_size", "grad_accum", "seed"):
        if key in train_cfg:
            lines.append(f"| train.{key} | {train_cfg[key]} |")
    lines.append(f"| model.max_length | {config.get('model', {}).get('max_length')} |")
    for key in ("steps", "best_step", "train_seconds", "train_samples_per_s", "peak_rss_mb"):
        if training.get(key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {training[key]} |")
    lines.append("")
    lines += _data_section(metrics.get("data", {}), training.get("truncation"))
    lines += _results_section(metrics)
    lines += _calibration_section(training.get("calibration"), metrics)
    lines += _limitations(metrics, config)
    export = manifest.get("export")
    lines += _export_section(export) if export else _usage(name, task, meta.get("pipeline_tag", ""))
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(lines).rstrip() + "\n"


def _data_section(data: dict[str, Any], truncation: dict[str, Any] | None) -> list[str]:
    if not data:
        return []
    lines = ["## Data", "", "| split | examples | model inputs | tokens (median / 95th pct / max) | from |",
             "| --- | ---: | ---: | --- | --- |"]
    for split, entry in data.items():
        tokens = entry.get("input_tokens")
        shown = f"{tokens['median']} / {tokens['p95']} / {tokens['max']}" if tokens else ""
        lines.append(f"| {split} | {entry['examples']:,} | {entry['model_inputs']:,} | {shown} | "
                     f"{entry.get('file') or entry.get('source') or entry.get('carved') or ''} |")
    lines.append("")
    for split, entry in data.items():
        labels = entry.get("labels")
        if not labels:
            continue
        spread = labels.get("counts") or labels.get("entities")
        if spread:
            kind = "labels" if "counts" in labels else "entities"
            shown = ", ".join(f"{k} {v:,}" for k, v in list(spread.items())[:20])
            more = f" and {len(spread) - 20} more" if len(spread) > 20 else ""
            lines.append(f"- {split} {kind}: {shown}{more}")
        else:
            lines.append(f"- {split} labels: " + ", ".join(f"{k} {v:g}" for k, v in labels.items()))
    if truncation:
        for split, cut in truncation.items():
            if cut.get("truncated"):
                lines.append(f"- {split}: {cut['truncated']:,} of {cut['inputs']:,} inputs ({cut['share']:.1%}) were "
                             f"cut to the model's window (median {cut.get('tokens_cut_median', 0):g} tokens lost)")
    return lines + [""]


def _results_section(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Results", ""]
    for split in ("test", "validation"):
        figures = _card_metrics(metrics.get(split))
        if not figures:
            continue
        n = (metrics.get(split) or {}).get("n")
        lines.append(f"{split.title()}{f' ({n:,} examples)' if n else ''}:")
        lines.append("")
        lines += ["| metric | value | 95 % interval |", "| --- | ---: | --- |"]
        ranges = metrics.get("intervals", {}).get(split, {})
        for key, value in figures.items():
            band = ranges.get(key)
            shown = f"{band['low']:.4f} to {band['high']:.4f}" if band else ""
            lines.append(f"| {key} | {value:.4f} | {shown} |")
        lines.append("")
    if metrics.get("validation") and not metrics.get("test"):
        lines += ["The validation split also chose the best checkpoint, so its figures are optimistic; "
                  "evaluate on held-out data (`transferlm evaluate`).", ""]
    comparison = metrics.get("comparison")
    if comparison:
        lines += ["### Against the baselines (`transferlm compare`)", "", comparison["verdict"], ""]
    return lines


def _calibration_section(calibration: dict[str, Any] | None, metrics: dict[str, Any]) -> list[str]:
    """What was fitted on validation after training: a temperature (classification) or QA's no-answer threshold."""
    if not calibration:
        return []
    lines = []
    if calibration.get("skipped"):
        lines.append(f"No temperature was fitted: {calibration['skipped']}.")
    elif calibration.get("temperature") is not None and "ece_before" in calibration:
        lines.append(f"Probabilities are temperature-scaled (T = {calibration['temperature']:.3f}, fitted on "
                     f"validation); expected calibration error on validation {calibration['ece_before']:.4f} "
                     f"before, {calibration.get('ece_after', 0):.4f} after ({calibration.get('ece_bins', 15)} bins).")
    if calibration.get("null_threshold") is not None:
        lines.append(f"No-answer threshold {calibration['null_threshold']:g}, chosen on validation.")
    test_ece = (metrics.get("test") or {}).get("ece")
    if test_ece is not None and lines:
        lines.append(f"Test ECE: {test_ece:.4f}.")
    return ["## Calibration", "", *lines, ""] if lines else []


def _limitations(metrics: dict[str, Any], config: dict[str, Any]) -> list[str]:
    lines = ["## Limitations", ""]
    train = metrics.get("data", {}).get("train", {})
    n = train.get("examples")
    if n is not None and n < 1000:
        lines.append(f"- Trained on {n:,} examples: expect it to be wrong more often on text unlike them.")
    counts = (train.get("labels") or {}).get("counts")
    if counts and len(counts) > 1 and max(counts.values()) >= 5 * min(counts.values()):
        lines.append(f"- The training labels are imbalanced (largest class {max(counts.values()):,}, smallest "
                     f"{min(counts.values()):,}): check the per-class figures (`transferlm inspect`).")
    cut = (metrics.get("training", {}).get("truncation") or {}).get("train")
    if cut and cut.get("truncated"):
        lines.append(f"- {cut['share']:.1%} of the training inputs were longer than its window of "
                     f"{config.get('model', {}).get('max_length')} tokens.")
    lines.append("- It knows only what its base model and this data taught it; it inherits their biases. "
                 "`transferlm inspect` reports slices, calibration and suspected label errors.")
    return lines + [""]


def _usage(name: str, task: str, pipeline_tag: str) -> list[str]:
    lines = ["## How to use", "", "With transferlm:", "", "```python", "import transferlm", "",
             f'predictor = transferlm.load("{name}")']
    example = {"qa": 'predictor.predict([{"question": "Who?", "context": "..."}])',
               "causal-lm": 'predictor.generate(["Once upon a time"])'}.get(task, 'predictor.predict(["some text"])')
    lines += [example, "```", ""]
    if pipeline_tag:
        lines += ["The folder is also a Hugging Face model directory (a LoRA run that was not merged is a PEFT "
                  "adapter):", "", "```python", "from transformers import pipeline", "",
                  f'model = pipeline("{pipeline_tag}", model="{name}")', "```", ""]
    lines += ["For ONNX Runtime: `transferlm export RUN --output DIR` writes `model.onnx` with its own card.", ""]
    return lines



def _export_section(export: dict[str, Any]) -> list[str]:
    """How an ONNX export was checked against the torch model, and how to run it."""
    lines = ["## ONNX export", "", f"`model.onnx` ({export.get('quantize') or 'fp32'}, {export.get('size_mb')} MB): "
             f"largest logit difference to the torch model {export.get('max_abs_logit_diff', 0):.2e} on "
             f"{export.get('parity_examples')} examples."]
    if export.get("metric"):
        lines.append(f"{export['metric']} on {export['check_examples']} examples: torch fp32 "
                     f"{export['torch_metric']:.4f}, ONNX {export['quantize']} {export['onnx_metric']:.4f}.")
    lines += ["", "## How to use", "", "With transferlm (the same predictions, read through ONNX Runtime):", "",
              "```python", "import transferlm", "", 'predictor = transferlm.load("EXPORT_DIR")',
              'predictor.predict(["some text"])', "```", "", "With ONNX Runtime alone (the tokenizer is in the folder; "
              "the graph's output is `logits`, its labels in `labels.json`):", "", "```python",
              "import onnxruntime as ort", "from transformers import AutoTokenizer", "",
              'tokenizer = AutoTokenizer.from_pretrained("EXPORT_DIR")',
              'session = ort.InferenceSession("EXPORT_DIR/model.onnx")',
              'batch = tokenizer(["some text"], return_tensors="np")',
              "names = {i.name for i in session.get_inputs()}",
              'logits = session.run(["logits"], {k: v for k, v in batch.items() if k in names})[0]', "```", ""]
    return lines
