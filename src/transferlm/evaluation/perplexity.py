"""Perplexity of a causal LM on a text, by a sliding window whose protocol is part of the result.

The whole text is tokenised as one sequence (no special tokens added). The first window holds the first
``context`` tokens and scores all of them but the first (which has no context); each later window
scores the next ``stride`` tokens with the ``context - stride`` (or more) tokens before them as context.
Every token after the first is scored exactly once. Perplexity = exp(total negative log-likelihood /
scored tokens). Two numbers are comparable when tokenizer, text, context and stride are the same (the
scheme of Hugging Face's "perplexity of fixed-length models" guide, without its off-by-one at window
starts).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from transferlm.config.selected import CommandSettings
from transferlm.errors import ConfigError


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    scored_tokens: int
    text_tokens: int
    context: int
    stride: int
    windows: int
    seconds: float

    def protocol(self) -> str:
        return (f"{self.text_tokens:,} tokens (no special tokens added); windows of {self.context} tokens, each "
                f"scoring the next {self.stride} with at least {self.context - self.stride} tokens of context; "
                f"{self.scored_tokens:,} tokens scored in {self.windows} windows")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "protocol": self.protocol()}


def window_plan(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) per window; the scored ranges tile positions 1..n-1 exactly."""
    end = min(context, n_tokens)
    plan = [(0, end, 1)]
    while end < n_tokens:
        first, end = end, min(end + stride, n_tokens)
        plan.append((max(0, end - context), end, first))
    return plan


class PerplexitySettings(CommandSettings):
    section = "perplexity"
    context: int = Field(512, ge=2, description="Tokens per window.")
    stride: int = Field(256, ge=1, description="New tokens scored per window (below the context).")
    batch_size: int = Field(4, ge=1, description="Windows per forward pass.")


@torch.no_grad()
def perplexity(model, tokenizer, text: str, settings: PerplexitySettings | None = None) -> PerplexityResult:
    settings = settings or PerplexitySettings()
    context, stride, batch_size = settings.context, settings.stride, settings.batch_size
    if not 0 < stride < context:
        raise ConfigError(f"stride {stride}: must be at least 1 and below the context ({context}), so that every "
                          f"scored token has context; {context - 1} gives windows that barely overlap")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and context > limit:
        raise ConfigError(f"context {context}: the model takes at most {limit} positions; lower --context")
    began = time.perf_counter()
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if len(ids) < 2:
        raise ConfigError("the text has fewer than 2 tokens; there is nothing to score")
    plan = window_plan(len(ids), context, stride)
    model.eval()
    device = next(model.parameters()).device
    total, scored = 0.0, 0
    for start in range(0, len(plan), batch_size):
        chunk = plan[start:start + batch_size]
        width = max(end - begin for begin, end, _ in chunk)
        inputs = torch.full((len(chunk), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(inputs)
        targets = torch.full_like(inputs, -100)
        for row, (begin, end, first) in enumerate(chunk):
            inputs[row, : end - begin] = ids[begin:end]
            mask[row, : end - begin] = 1
            targets[row, first - begin: end - begin] = ids[first:end]
        logits = model(input_ids=inputs.to(device), attention_mask=mask.to(device)).logits.float()
        shifted = targets[:, 1:].to(device)
        total += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                       ignore_index=-100, reduction="sum"))
        scored += int((shifted != -100).sum())
    nll = total / scored
    return PerplexityResult(math.exp(nll), nll, scored, len(ids), context, stride, len(plan),
                            round(time.perf_counter() - began, 1))
