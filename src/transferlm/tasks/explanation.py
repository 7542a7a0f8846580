"""What a task tells the explainer (``inference/explain.py``): the model inputs of one record with the word each
position belongs to, and the outputs to explain, each a number per model input whose sum is the explained output
(a class logit averaged over windows, an entity's tag logits, an answer's start and end logits)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Word:
    text: str
    start: int | None  # character offsets in the input's text (None: pre-tokenised input without offsets)
    end: int | None
    side: int = 0  # 0: the text; 1: the text pair (or a QA context)


@dataclass(frozen=True)
class ExplanationInputs:
    items: list[dict[str, Any]]  # the record's model inputs (windows), as ``collate`` takes them
    word_of: list[list[int | None]]  # per item and position: the index of its word in ``words``; None: special token
    words: list[Word]


@dataclass(frozen=True)
class ExplanationTarget:
    name: str  # what is explained: a label, an entity, an answer's start
    # The model's output on a batch of the record's items (``Task.logits``) -> one number per item; their sum is
    # the explained output, so the attributions of every item add up to it.
    select: Callable[[torch.Tensor], torch.Tensor]


def whitespace_words(text: str, side: int) -> list[Word]:
    """Whitespace-separated words with their character spans."""
    return [Word(m.group(), m.start(), m.end(), side) for m in re.finditer(r"\S+", text)]


def word_at(words: Sequence[Word], first: int = 0):
    """A function from a character offset to the index (from ``first``) of the word holding it (or the next)."""
    starts = [w.start for w in words]

    def index(char: int) -> int:
        return first + max(0, bisect.bisect_right(starts, char) - 1)

    return index
