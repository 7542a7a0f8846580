"""``transferlm rank``: which pretrained model to fine-tune, estimated in seconds from fixed features.

Each candidate encodes (a seeded, stratified sample of) the training data once, without training. The task says
what a probe predicts (``Task.probe_targets``): one target per input, on the mean of a layer's states for an
encoder or the last token's state for a decoder (what it has read of the whole input); or one target per labelled
token (NER's word starts, QA's answer boundaries). Two estimates are taken on those features:

- **LogME** (You et al., ICML 2021): the evidence of the targets under Bayesian linear regression on the features;
  no hyperparameters, one SVD per layer. By default (``rank.layers: best``) a model scores its best layer's LogME:
  fine-tuning adapts every layer, and a model whose last layer is its least linearly useful one can still
  fine-tune best. ``rank.layers: last`` is LogME as published, on the last layer.
- **probe** (``rank.probe: true``, or ordering by it): a linear model fitted on the last layer's features, scored
  on held-out folds (3-fold cross-validated accuracy, balanced for token targets, or R² for a regression target).
  It answers the user's question more directly than LogME, but on token targets it costs as much as everything
  else together (CoNLL-2003, 4 candidates on 2 CPU cores: 14.5 s against 14.4 s) and it ranked fine-tuned results
  less well, so it is opt-in.

LogME orders by default, as the issue asked; ``rank.by: probe`` orders by the probe. Measured on 4 tasks (SST-2,
CoNLL-2003, STS-B, AG News; 4 candidates each, fine-tuned and tested; bench/README.md, "auto"), Kendall's tau
between the estimate and the fine-tuned score averages 0.47 against seed 42 for the best layer's LogME, 0.17 for
the last layer's and 0.30 for the probe: the last layer's LogME and the probe rate minilm's 3-layer cut above
minilm, because that sentence-embedding model's last layer is its least linearly useful one. All separate
pretrained from random reliably. The ranking estimates, it does not guarantee.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferlm.config.schema import RunConfig
from transferlm.data.records import stratified_split
from transferlm.errors import ConfigError, DataError, ModelSpecError
from transferlm.evaluation.logme import logme
from transferlm.experiments.config import RankSettings
from transferlm.models.embed import pooled
from transferlm.tasks.base import Features, ProbeTargets, Task, pad_inputs
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

RANDOM = "random:"  # a candidate spec prefix: the architecture only, randomly initialised (a floor)
PROBE_ROWS = 20_000  # token-level scores (LogME and the probe) use at most this many labelled tokens
BATCH_TOKENS = 8_192


@dataclass
class Ranked:
    model: str
    kind: str
    logme: float  # of the layer rank.layers names (best: the highest over the layers; last: the last layer)
    probe: float | None  # None: not fitted (rank.probe)
    probe_metric: str
    features: str
    examples: int
    targets: int
    seconds: float
    error: str | None = None
    layer: int | None = None  # the layer LogME was taken at (0: the embeddings)
    logme_layers: list[float] | None = None  # LogME of every layer's features, 0 (the embeddings) to the last
    probe_seconds: float | None = None  # the probe's share of ``seconds``


@dataclass
class ProbeData:
    features: np.ndarray  # the last layer's
    targets: np.ndarray
    regression: bool
    level: str
    layers: list[np.ndarray] | None = None  # every layer's features, 0 (the embeddings) to the last


def sample_records(task: Task, config: RunConfig, limit: int) -> list:
    """The training records (labels fitted), at most ``limit`` of them: a seeded sample keeping each class's share."""
    records, problems = task.read_records(config.data.train)
    problems += task.fit_labels(records, {}, train_name=str(config.data.train))
    if problems:
        raise DataError(problems)
    if len(records) <= limit:
        return records
    _, kept = stratified_split(records, task.split_key, limit / len(records), config.train.seed)
    return kept


def _backbone(spec: str, path: Path):
    from transformers import AutoConfig, AutoModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        if spec.startswith(RANDOM):
            return AutoModel.from_config(AutoConfig.from_pretrained(path)).eval()
        return AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def probe_data(task: Task, features: Features, backbone, kind: str, pad_id: int) -> ProbeData:
    """The fixed features of every layer and the probe's targets, for every encoded item."""
    from transferlm.inference.batches import inference_order

    rows: list[list[torch.Tensor]] = []  # per batch, per layer
    values: list[Any] = []
    regression = False
    level = "sequence"
    for indices in inference_order(features.lengths, 64, BATCH_TOKENS):
        items = [features.items[i] for i in indices]
        targets: list[ProbeTargets] = [task.probe_targets(item) for item in items]
        batch = pad_inputs(items, pad_id)
        level = targets[0].level
        regression = targets[0].regression
        per_layer = []
        for states in backbone(**batch, output_hidden_states=True).hidden_states:
            states = states.float()
            if level == "sequence":
                per_layer.append(pooled(states, batch["attention_mask"], kind))
            else:
                per_layer.append(torch.cat([states[b, t.positions] for b, t in enumerate(targets) if t.positions]
                                           or [states.new_zeros(0, states.shape[-1])]))
        rows.append(per_layer)
        for t in targets:
            values += t.values
    if not values:
        raise DataError([f"{task.name}: no example of the training data has a target for a probe"])
    layers = [torch.cat([batch[k] for batch in rows]).numpy() for k in range(len(rows[0]))]
    return ProbeData(layers[-1], np.asarray(values, dtype=np.float64 if regression else np.int64), regression, level,
                     layers)


def subsample(data: ProbeData, limit: int, seed: int) -> ProbeData:
    """At most ``limit`` rows: all of the rarer classes' rows that fit, then the most common class's (token targets
    are mostly one class: NER's O, QA's non-boundary tokens)."""
    if len(data.targets) <= limit:
        return data
    rng = np.random.default_rng(seed)
    if data.regression:
        keep = rng.choice(len(data.targets), limit, replace=False)
    else:
        common = np.bincount(data.targets).argmax()
        rare = np.flatnonzero(data.targets != common)
        rare = rng.choice(rare, min(len(rare), limit // 2), replace=False)
        rest = rng.choice(np.flatnonzero(data.targets == common), limit - len(rare), replace=False)
        keep = np.sort(np.concatenate([rare, rest]))
    return ProbeData(data.features[keep], data.targets[keep], data.regression, data.level,
                     None if data.layers is None else [layer[keep] for layer in data.layers])


def probe_score(data: ProbeData, seed: int) -> tuple[float, str]:
    """A linear probe's held-out score: 3-fold accuracy (logistic regression; balanced accuracy for token targets,
    where one class dominates) or R² (ridge)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, targets = data.features, data.targets
    if data.regression:
        model, folds, metric = Ridge(alpha=1.0), KFold(3, shuffle=True, random_state=seed), "r2"
    else:
        counts = np.bincount(targets)
        smallest = counts[counts > 0].min() if len(counts) else 0
        folds = StratifiedKFold(min(3, max(int(smallest), 2)), shuffle=True, random_state=seed)
        model = LogisticRegression(max_iter=500)
        metric = "balanced_accuracy" if data.level == "token" else "accuracy"
    scores = cross_val_score(make_pipeline(StandardScaler(), model), features, targets, cv=folds, scoring=metric)
    return float(np.mean(scores)), metric


def layer_logme(data: ProbeData, which: str) -> tuple[float, int, list[float]]:
    """(LogME, the layer it was taken at, every layer's LogME): ``which`` is best (the highest over the layers) or
    last. Fine-tuning adapts every layer, and a deep model can fine-tune well although its last layer is its least
    linearly useful one (all-MiniLM-L6-v2, a sentence-embedding model, on 4 tasks): the best layer credits that,
    and a model never scores below a copy of its own first layers."""
    layers = data.layers if data.layers is not None else [data.features]
    scores = [logme(features, data.targets, regression=data.regression) for features in layers]
    at = int(np.nanargmax(scores)) if which == "best" and np.isfinite(scores).any() else len(scores) - 1
    return scores[at], at, [float(s) for s in scores]


def rank_one(spec: str, task: Task, config: RunConfig, records: list, which: str = "best",
             with_probe: bool = False) -> Ranked:
    """One candidate's features, LogME and (``with_probe``) probe score, timed from loading the model to the last
    score."""
    from transferlm.models.load import load_tokenizer, quiet_loading
    from transferlm.models.resolve import model_kind, resolve_model
    from transferlm.runs.lengths import resolve_max_length

    started = time.perf_counter()
    resolved = resolve_model(spec.removeprefix(RANDOM))
    tokenizer = load_tokenizer(resolved.path)
    max_length = resolve_max_length(config, task, tokenizer, resolved.path, records).model.max_length
    features = task.encode(tokenizer, records, max_length)
    kind = model_kind(resolved.path)
    with quiet_loading():
        backbone = _backbone(spec, resolved.path)
    data = subsample(probe_data(task, features, backbone, kind, tokenizer.pad_token_id), PROBE_ROWS,
                     config.train.seed)
    if data.regression:  # standardised targets: the evidence does not depend on the label's unit
        data.targets = (data.targets - data.targets.mean(axis=0)) / np.maximum(data.targets.std(axis=0), 1e-12)
    score, layer, every = layer_logme(data, which)
    probe, metric, probe_seconds = None, "", None
    if with_probe:
        probe_started = time.perf_counter()
        probe, metric = probe_score(data, config.train.seed)
        probe_seconds = time.perf_counter() - probe_started
    read = "token states" if data.level == "token" else (
        "last-token state" if kind == "decoder" else "mean of token states")
    last = len(every) - 1
    where = f"LogME at layer {layer} of {last}" + (" (the best)" if which == "best" else "")
    described = f"{read}, {data.features.shape[1]} dims, max length {max_length}; {where}" + (
        f"; probe at layer {last}" if with_probe else "")
    if spec.startswith(RANDOM):
        described += "; random initialisation"
    return Ranked(spec, kind, score, probe, metric, described, len(records), len(data.targets),
                  time.perf_counter() - started, layer=layer, logme_layers=every, probe_seconds=probe_seconds)


def rank(config: RunConfig, settings: RankSettings) -> list[Ranked]:
    """Every candidate of ``settings.models`` (default: the config's model) ranked by ``settings.by``; writes
    rank.json and rank.md into ``config.output``. A candidate that cannot be loaded is reported, not fatal."""
    from transferlm.tasks import build_task

    task = build_task(config.task, config.data)
    records = sample_records(task, config, settings.max_examples)
    results = []
    for spec in settings.models or [config.model.name]:
        try:
            results.append(rank_one(spec, task, config, records, settings.layers, settings.fits_probe))
        except (ModelSpecError, OSError, ValueError) as e:
            log.warning("rank: %s failed: %s", spec, e)
            results.append(Ranked(spec, "", float("nan"), None, "", "", len(records), 0, 0.0, str(e)))
        log.info("rank: %s %s", spec, results[-1])
    if all(r.error for r in results):
        raise ConfigError("rank: no candidate could be scored:\n" + "\n".join(f"  {r.model}: {r.error}"
                                                                              for r in results))
    def order(r: Ranked) -> tuple[bool, float]:
        value = getattr(r, settings.by)
        usable = value is not None and np.isfinite(value)
        return r.error is not None or not usable, -value if usable else 0.0

    ordered = sorted(results, key=order)
    write_ranking(Path(config.output), ordered, task, settings)
    return ordered


def ranking_markdown(ranked: list[Ranked], task: Task, settings: RankSettings) -> str:
    metric = next((r.probe_metric for r in ranked if r.probe_metric), "")
    probe = [f"probe ({metric}, 3-fold)"] if settings.fits_probe else []
    header = ["rank", "model", "LogME", *probe, "features", "targets", "seconds"]
    lines = [f"# Model ranking ({task.name}, by {settings.by})", "", "| " + " | ".join(header) + " |",
             "| " + " | ".join("---" if h in ("model", "features") else "---:" for h in header) + " |"]
    for i, r in enumerate(ranked, 1):
        if r.error:
            lines.append(f"| | {r.model} | failed: {r.error} |" + " |" * (len(header) - 3))  # the other cells empty
            continue
        cells = [str(i), r.model, f"{r.logme:.4f}", *([f"{r.probe:.4f}"] if probe else []), r.features,
                 f"{r.targets:,}", f"{r.seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{ranked[0].examples:,} training examples (a seeded sample when the file has more than "
                  f"{settings.max_examples:,}). LogME compares models on the same data only; higher is better; "
                  + ("it is each model's best layer's (rank.layers: best). " if settings.layers == "best" else
                     "it is each model's last layer's (rank.layers: last). ")
                  + ("" if probe else "No linear probe was fitted (rank.probe: true adds one). ")
                  + "Estimates from frozen features, before any fine-tuning: bench/README.md measures how well they "
                  "rank fine-tuned results."]
    return "\n".join(lines) + "\n"


def write_ranking(out: Path, ranked: list[Ranked], task: Task, settings: RankSettings) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": task.name, "by": settings.by, "ranking": [asdict(r) for r in ranked]}
    atomic_write_text(out / "rank.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(out / "rank.md", ranking_markdown(ranked, task, settings))
