"""Sentence embeddings from a pretrained model as it is: one vector per input, no training.

An encoder's input is the mean of its last layer's token states (how sentence-embedding checkpoints such as
all-MiniLM-L6-v2 were trained); a decoder's is its last token's state, the only one that has read the whole input.
``rank`` scores these features, and the ``cosine`` baseline compares two of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_TOKENS = 256  # an embedding reads at most this many tokens of an input


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each input's token states over its attention mask."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def pooled(states: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """One vector per input: the mean over its tokens (encoder), or its last token's state (decoder)."""
    if kind == "decoder":
        last = mask.sum(dim=1) - 1
        return states[torch.arange(len(states)), last]
    return mean_pooled(states, mask)


@torch.no_grad()
def embed_texts(backbone, tokenizer, texts: Sequence[str], kind: str, batch_size: int = 64) -> torch.Tensor:
    """The embedding of each text, in the order given (encoded in batches of similar length: little padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows = torch.empty(len(texts), backbone.config.hidden_size)
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=MAX_TOKENS,
                          return_tensors="pt")
        states = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        rows[chosen] = pooled(states.float(), batch["attention_mask"], kind)
    return rows
