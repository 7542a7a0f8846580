"""Inputs longer than ``model.max_length`` for tasks with one output per input (classification, regression).

``task.long_inputs`` says what happens to the tokens that do not fit:

- ``windows`` (the default): the input becomes overlapping windows of ``model.max_length`` that share
  ``task.stride`` tokens; every token is read at least once. Training weighs each of a document's windows by one
  over its window count, so a document of 30 windows counts as much as one of 1; the document's output is the
  mean (or max) of its windows' outputs (``task.window_aggregate``).
- ``head-tail``: the first and the last tokens, the middle is cut (Sun et al., 2019, "How to Fine-Tune BERT for
  Text Classification?", found 128 head + 382 tail tokens best for BERT on IMDb; the same proportion is kept at
  any length).
- ``truncate``: the first tokens (for a text pair, the longer side is cut first, as transformers does).

Whatever is cut is recorded (``Cut``) so that no command cuts text silently. Special tokens are placed by a
``Template`` probed once from the tokenizer: transformers 5's tokenizers no longer expose
``build_inputs_with_special_tokens``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import Field

from transferlm.config.selected import Section
from transferlm.errors import ConfigError

HEAD_SHARE = 128 / 510  # head-tail: the head's share of the window (Sun et al., 2019: 128 + 382 of 510)
Piece = tuple[int, int]  # a token range [start, end) of one side of the input


class LongInputSettings(Section):
    """What a task with one output per input does with inputs longer than ``model.max_length``."""

    long_inputs: Literal["windows", "head-tail", "truncate"] = Field(
        "windows",
        description="Inputs longer than model.max_length: windows (overlapping windows, the document's output "
        "aggregated over them; nothing is cut), head-tail (keep the first quarter and the last three quarters of "
        "the window, cut the middle), or truncate (keep the first tokens). Whatever is cut is counted in the logs, "
        "metrics.json and each prediction.",
    )
    stride: Optional[int] = Field(
        None, ge=0,
        description="windows: tokens shared by consecutive windows of a long input; default a quarter of the window.",
    )
    window_aggregate: Literal["mean", "max"] = Field(
        "mean", description="windows: how a document's output is made of its windows' outputs (mean or max of the "
        "logits, or of the predicted numbers for regression).",
    )


@dataclass(frozen=True)
class Cut:
    """What one input lost: its token count (without special tokens), how many were kept, and the side cut."""

    tokens: int
    kept: int
    side: Literal["text", "text_pair", "both"]

    def as_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "kept": self.kept, "cut": self.tokens - self.kept, "side": self.side}


@dataclass(frozen=True)
class Template:
    """Special tokens a tokenizer puts around one text or a text pair, and the token type of each segment."""

    single: tuple[tuple[int, ...], ...]  # prefix, suffix
    pair: tuple[tuple[int, ...], ...]  # prefix, middle, suffix
    single_types: tuple[int, ...] | None  # of prefix, text, suffix (None: the tokenizer gives no token types)
    pair_types: tuple[int, ...] | None  # of prefix, first, middle, second, suffix

    @classmethod
    def probe(cls, tokenizer: Any) -> Template:
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        one, two = tokenizer("a"), tokenizer("a", "b")
        at = _find(one["input_ids"], a, 0)
        pa = _find(two["input_ids"], a, 0)
        pb = _find(two["input_ids"], b, pa + len(a)) if pa >= 0 else -1
        if at < 0 or pa < 0 or pb < 0:
            raise ConfigError(f"task.long_inputs: cannot tell where tokenizer {type(tokenizer).__name__} puts its "
                              "special tokens (a probe text was not found in its own encoding); report this model")
        single = _segments(one["input_ids"], [at, at + len(a)])
        pair = _segments(two["input_ids"], [pa, pa + len(a), pb, pb + len(b)])
        return cls(
            single=(single[0], single[2]),
            pair=(pair[0], pair[2], pair[4]),
            single_types=_types(one, [at, at + len(a)]),
            pair_types=_types(two, [pa, pa + len(a), pb, pb + len(b)]),
        )

    def added(self, pair: bool) -> int:
        return sum(map(len, self.pair if pair else self.single))

    def build(self, first: Sequence[int], second: Sequence[int] | None) -> dict[str, list[int]]:
        """One model input of the given token ids, with the special tokens the tokenizer would add."""
        if second is None:
            segments, types = (self.single[0], first, self.single[1]), self.single_types
        else:
            segments, types = (self.pair[0], first, self.pair[1], second, self.pair[2]), self.pair_types
        item = {"input_ids": [t for segment in segments for t in segment]}
        if types is not None:
            item["token_type_ids"] = [kind for segment, kind in zip(segments, types, strict=True) for _ in segment]
        return item

    def positions(self, first: Sequence[int], second: Sequence[int] | None) -> list[tuple[int, int] | None]:
        """Where each position of ``build``'s input comes from: (0, i) for the first text's token ``first[k]``
        placed there, (1, i) for the second's, None for a special token."""
        specials = self.single if second is None else self.pair
        out: list[tuple[int, int] | None] = [None] * len(specials[0])
        out += [(0, i) for i in first]
        if second is not None:
            out += [None] * len(specials[1]) + [(1, i) for i in second]
        return out + [None] * len(specials[-1])


def _segments(ids: Sequence[int], bounds: list[int]) -> list[tuple[int, ...]]:
    edges = [0, *bounds, len(ids)]
    return [tuple(ids[a:b]) for a, b in zip(edges, edges[1:], strict=False)]


def _types(encoding: Any, bounds: list[int]) -> tuple[int, ...] | None:
    if "token_type_ids" not in encoding:
        return None
    kinds = encoding["token_type_ids"]
    edges = [0, *bounds, len(kinds)]
    # An empty segment (no prefix, say) has no token to read a type from; it adds no token either.
    return tuple(kinds[a] if b > a else 0 for a, b in zip(edges, edges[1:], strict=False))


def _find(seq: Sequence[int], sub: Sequence[int], start: int) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if list(seq[i:i + len(sub)]) == list(sub):
            return i
    return -1


def longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """Tokens kept of each side of a pair that must fit ``budget``: the longer side loses tokens first (the same
    split as the tokenizers library's longest_first truncation)."""
    if first + second <= budget:
        return first, second
    short, long = sorted((first, second))
    keep_short = short if short <= budget else budget
    keep_long = max(keep_short, budget - keep_short)
    if keep_short + keep_long > budget:
        keep_short = budget // 2
        keep_long = keep_short + budget % 2
    return (keep_long, keep_short) if first > second else (keep_short, keep_long)


def side_pieces(n: int, room: int, mode: str, stride: int | None) -> list[tuple[Piece, ...]]:
    """The token ranges of one side of ``n`` tokens in each window, for a window of ``room`` tokens."""
    if n <= room:
        return [((0, n),)]
    if mode == "truncate":
        return [((0, room),)]
    if mode == "head-tail":
        head = round(room * HEAD_SHARE)
        return [((0, head), (n - (room - head), n))]
    overlap = room // 4 if stride is None else min(stride, room // 2)
    step = max(1, room - overlap)
    starts = list(range(0, n - room, step)) + [n - room]  # the last window ends at the last token, full length
    return [((s, s + room),) for s in starts]


def plan(first: int, second: int | None, budget: int, mode: str, stride: int | None
         ) -> tuple[list[tuple[tuple[Piece, ...], tuple[Piece, ...] | None]], Cut | None]:
    """The windows of one input (token ranges of its first side and of its second, if a pair) and what was cut.

    A pair in ``windows`` or ``head-tail`` keeps its shorter side whole in every window (cut to half the window if
    it is longer than that) and applies the mode to the longer side."""
    if second is None:
        windows = [(p, None) for p in side_pieces(first, budget, mode, stride)]
        kept = _covered([w[0] for w in windows])
        return windows, (Cut(first, kept, "text") if kept < first else None)
    if first + second <= budget:
        return [(((0, first),), ((0, second),))], None
    if mode == "truncate":
        keep_a, keep_b = longest_first(first, second, budget)
        windows = [(((0, keep_a),), ((0, keep_b),))]
    else:
        first_is_long = first > second
        keep_short = min(second if first_is_long else first, budget // 2)
        long_sides = side_pieces(first if first_is_long else second, budget - keep_short, mode, stride)
        short_side = ((0, keep_short),)
        windows = [(w, short_side) if first_is_long else (short_side, w) for w in long_sides]
    kept_a = _covered([w[0] for w in windows])
    kept_b = _covered([w[1] for w in windows])
    cut_a, cut_b = kept_a < first, kept_b < second
    if not (cut_a or cut_b):
        return windows, None
    side = "both" if cut_a and cut_b else "text" if cut_a else "text_pair"
    return windows, Cut(first + second, kept_a + kept_b, side)


def _covered(sides: Sequence[tuple[Piece, ...]]) -> int:
    """Distinct tokens read across windows (a token shared by two windows counts once)."""
    seen: set[int] = set()
    for pieces in sides:
        for start, end in pieces:
            seen.update(range(start, end))
    return len(seen)


def take(ids: Sequence[int], pieces: tuple[Piece, ...]) -> list[int]:
    return [t for start, end in pieces for t in ids[start:end]]


def cut_summary(cuts: dict[int, Cut], inputs: int) -> dict[str, Any]:
    """How many of ``inputs`` were cut and by how much, for logs and metrics.json."""
    lost = [c.tokens - c.kept for c in cuts.values()]
    summary: dict[str, Any] = {"inputs": inputs, "truncated": len(cuts),
                               "share": round(len(cuts) / inputs, 4) if inputs else 0.0}
    if lost:
        summary |= {"tokens_cut_median": statistics.median(lost), "tokens_cut_max": max(lost),
                    "tokens_cut_total": sum(lost)}
        sides: dict[str, int] = {}
        for c in cuts.values():
            sides[c.side] = sides.get(c.side, 0) + 1
        summary["by_side"] = sides
    return summary


def describe_cuts(summary: dict[str, Any], where: str, max_length: int, mode: str) -> str:
    """One log line for a split's cut summary."""
    if not summary["truncated"]:
        return f"{where}: no input cut at model.max_length {max_length} (task.long_inputs {mode})"
    sides = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("by_side", {}).items()))
    return (f"{where}: {summary['truncated']} of {summary['inputs']} inputs ({summary['share']:.1%}) cut at "
            f"model.max_length {max_length} by task.long_inputs {mode}: median {summary['tokens_cut_median']:g} "
            f"tokens lost, at most {summary['tokens_cut_max']} (side cut: {sides}); task.long_inputs: windows "
            "reads every token")


def choose_max_length(lengths: Sequence[int], limit: int, quantile: float = 0.95) -> int:
    """``model.max_length: auto``: the smallest multiple of 32 that holds ``quantile`` of the inputs (special tokens
    included), at most ``limit``."""
    if not lengths:
        return min(128, limit)
    ordered = sorted(lengths)
    wanted = ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]  # the longest of the shortest 95 %
    return max(32, min(limit, -(-wanted // 32) * 32))


def text_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Each text's token ids without special tokens (``Template.build`` places them)."""
    # verbose=False: transformers warns of every text longer than the model's limit; windows are made of them.
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
