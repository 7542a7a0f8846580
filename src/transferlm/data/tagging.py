"""Tag schemes for sequence labelling: detect IOB1 / BIO (IOB2) / BIOES, convert to BIO, check, and move
between tags, entity spans and words with character offsets.

Everything downstream of reading works in BIO: it is what seqeval's strict mode scores and what the
model predicts. Reading converts once; problems are returned, never raised, so a reader can report
every problem of a file at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SCHEMES = ("iob1", "bio", "bioes")
_TAG = re.compile(r"^(?:O|([BIESLU])-(.+))$")
# Words for raw text: runs of letters/digits, or single other non-space characters (punctuation).
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Span:
    start: int  # first word (or character) index
    end: int  # one past the last
    label: str


def parse(tag: str) -> tuple[str, str | None] | None:
    """("B", "PER") for B-PER, ("O", None) for O; None when the tag is malformed."""
    m = _TAG.match(tag)
    if not m:
        return None
    return ("O", None) if tag == "O" else (m.group(1), m.group(2))


def malformed(tags: Sequence[str]) -> list[int]:
    return [i for i, t in enumerate(tags) if parse(t) is None]


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """bioes if any E-/S-/L-/U- prefix occurs; iob1 if entities start with I- and every B- follows a
    same-type entity (IOB1's only use of B-); else bio (where an I- after O is then an error)."""
    prefixes = {parse(t)[0] for tags in sentences for t in tags if parse(t)}
    if prefixes & {"E", "S", "L", "U"}:
        return "bioes"
    starts_with_i = False
    b_only_between = True
    for tags in sentences:
        prev = ("O", None)
        for tag in tags:
            kind, label = parse(tag) or ("O", None)
            if kind == "I" and prev[1] != label:
                starts_with_i = True
            if kind == "B" and prev[1] != label:
                b_only_between = False
            prev = (kind, label)
    return "iob1" if starts_with_i and b_only_between else "bio"


def to_bio(tags: Sequence[str], scheme: str) -> tuple[list[str], list[int]]:
    """BIO tags, and the positions of I- tags that continue nothing (repaired to B- under iob1, kept and
    reported under bio). Tags must be well-formed (see ``malformed``)."""
    out, orphans = [], []
    prev_label = None
    for i, tag in enumerate(tags):
        kind, label = parse(tag)
        if kind == "O":
            out.append("O")
        elif scheme == "bioes":
            out.append(f"{'B' if kind in 'BSU' else 'I'}-{label}")
            if kind in "IEL" and prev_label != label:
                orphans.append(i)
        elif kind == "I" and prev_label != label:
            if scheme == "bio":
                orphans.append(i)
            out.append(f"B-{label}" if scheme == "iob1" else tag)
        else:
            out.append(tag)
        # In BIOES an entity ends at E-/S-: the next I- starts nothing.
        prev_label = None if kind == "O" or (scheme == "bioes" and kind in "ESLU") else label
    return out, orphans


def spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of a BIO sequence; an I- that continues nothing opens an entity (as conlleval does)."""
    found: list[Span] = []
    start, label = None, None
    for i, tag in enumerate([*tags, "O"]):
        kind, this = parse(tag) or ("O", None)
        if start is not None and (kind != "I" or this != label):
            found.append(Span(start, i, label))
            start = None
        if kind in ("B", "I") and start is None:
            start, label = i, this
    return found


def continuation(tag: str) -> str:
    """The tag of a word's later subwords when every subword is labelled: B-X becomes I-X."""
    return f"I-{tag[2:]}" if tag.startswith("B-") else tag


def words_with_offsets(text: str, cuts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Character spans of the words of ``text``, also split at each position in ``cuts`` (entity
    boundaries), so every entity covers whole words."""
    cut_set = set(cuts)
    found = []
    for m in _WORD.finditer(text):
        start = m.start()
        for cut in sorted(c for c in cut_set if m.start() < c < m.end()):
            found.append((start, cut))
            start = cut
        found.append((start, m.end()))
    return found


def tags_for_spans(words: Sequence[tuple[int, int]], entities: Sequence[Span]) -> list[str]:
    """BIO tags of words (character spans) for character-span entities that start and end on word edges."""
    tags = ["O"] * len(words)
    for entity in entities:
        inside = [i for i, (s, e) in enumerate(words) if s >= entity.start and e <= entity.end]
        for n, i in enumerate(inside):
            tags[i] = f"{'B' if n == 0 else 'I'}-{entity.label}"
    return tags
