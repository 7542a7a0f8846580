"""The pretrained model used as it is, with no training: the reference that fine-tuning has to beat.

``cosine`` (regression on text pairs, such as semantic similarity): the cosine of the two texts' sentence
embeddings (``models/embed.py``), put on the label's scale by a least-squares line fitted on train. A
sentence-embedding checkpoint was trained for exactly this; all-MiniLM-L6-v2 scores 82.03 test Spearman on STS-B
this way (bench/README.md, bench/stsb.py), above the same model fine-tuned as a cross-encoder on 1,000 pairs
(75.75, bench/README.md, auto). Without this member `compare` would call that fine-tuning a success against TF-IDF.
Rank metrics (Spearman) do not depend on the line; RMSE and MAE do.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

import numpy as np
import torch

from transferlm.baselines.result import BaselineResult, scored_splits
from transferlm.data.records import Record
from transferlm.errors import ConfigError
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)

FIT_PAIRS = 2000  # the line is fitted on at most this many training pairs (a seeded sample): two parameters


def run_cosine(
    task: Task, train: Sequence[Record], evaluate: dict[str, Sequence[Record]], seed: int,
    select_on: str = "validation", model: str | None = None,
) -> BaselineResult:
    """``model``'s cosine similarity of each pair, on the label's scale (nothing is chosen on ``select_on``)."""
    from transformers import AutoModel

    from transferlm.models.embed import embed_texts
    from transferlm.models.load import load_tokenizer, quiet_loading
    from transferlm.models.resolve import model_kind, resolve_model

    if model is None:
        raise ConfigError("the cosine baseline reads a pretrained model: give model.name")
    unpaired = [name for name, records in [("train", train), *evaluate.items()] if any(r.text_pair is None
                                                                                      for r in records)]
    if unpaired:
        raise ConfigError(f"the cosine baseline compares two texts; {', '.join(unpaired)} has examples without a "
                          "second text (data.text_pair_column)")
    began = time.perf_counter()
    resolved = resolve_model(model)
    tokenizer = load_tokenizer(resolved.path)
    kind = model_kind(resolved.path)
    with quiet_loading():
        backbone = AutoModel.from_pretrained(resolved.path).eval()

    def cosines(records: Sequence[Record]) -> np.ndarray:
        first = embed_texts(backbone, tokenizer, [r.text for r in records], kind)
        second = embed_texts(backbone, tokenizer, [r.text_pair for r in records], kind)
        return torch.nn.functional.cosine_similarity(first, second, dim=1).double().numpy()

    fit = list(train) if len(train) <= FIT_PAIRS else random.Random(seed).sample(list(train), FIT_PAIRS)
    slope, intercept = np.polyfit(cosines(fit), task.targets(fit).double().numpy(), 1)
    predicted = {name: torch.from_numpy(intercept + slope * cosines(records)) for name, records in evaluate.items()}
    targets = {name: task.targets(records) for name, records in evaluate.items()}
    seconds = time.perf_counter() - began
    log.info("cosine: %s (%s embeddings), label = %.3f + %.3f * cosine (fitted on %d training pairs)", model,
             "last-token" if kind == "decoder" else "mean-pooled", intercept, slope, len(fit))
    return BaselineResult(scored_splits(task, predicted, targets), round(seconds, 2), 2,
                          {"model": model, "slope": float(slope), "intercept": float(intercept),
                           "fitted_on": len(fit)})
