"""Long inputs as overlapping windows, and merging per-window outputs back, so nothing is ever cut off.

A sentence of words whose subwords exceed the model's limit becomes windows of whole words; consecutive
windows share up to ``stride`` subwords. After inference, each word takes its output from the window in
which it has the most context (the most words on its shorter side), so every word is read exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_windows(subwords_per_word: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) covering every word; each holds at most ``budget`` subwords (a single word
    longer than that is a window of its own, cut by the tokenizer after its first subwords)."""
    n = len(subwords_per_word)
    windows: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and used + subwords_per_word[end] <= budget:
            used += subwords_per_word[end]
            end += 1
        end = max(end, start + 1)
        windows.append((start, end))
        if end >= n:
            break
        # Next start: the earliest word after `start` from which the rest of this window fits in `stride`.
        nxt, shared = end, 0
        while nxt - 1 > start and shared + subwords_per_word[nxt - 1] <= stride:
            nxt -= 1
            shared += subwords_per_word[nxt]
        start = nxt
    return windows


def context(word: int, window: tuple[int, int]) -> int:
    """How much context ``word`` has in ``window``: the words on its shorter side."""
    start, end = window
    return min(word - start, end - 1 - word)
