"""Extractive QA metrics as SQuAD defines them: exact match and token F1 after answer normalisation, the
maximum over the gold answers, with the HasAns/NoAns breakdown of SQuAD v2.0.

Normalisation (Rajpurkar et al., 2016, and the official evaluation scripts): lower-case, remove ASCII
punctuation, remove the articles "a", "an", "the" as words, and collapse whitespace. An unanswerable
question has the single gold answer "" and a "no answer" prediction is ""; when either side normalises
to no tokens, F1 is 1 if both do and 0 otherwise (the v2.0 rule, which v1.1 data never reaches).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not wanted:
        return float(predicted == wanted)
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def example_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the best over its gold answers. Gold answers that normalise to
    nothing are dropped, as the official v2.0 script does; none left (unanswerable) means ``[""]``."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(exact_match(prediction, g) for g in golds), max(token_f1(prediction, g) for g in golds)


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``exact_match`` and ``f1`` (fractions, means over questions), ``n``, and for data with unanswerable
    questions the same for the answerable (``has_answer_*``) and unanswerable (``no_answer_*``) ones."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    scores = [example_scores(p, g) for p, g in zip(predictions, golds, strict=True)]
    result: dict[str, Any] = {**_means(scores), "n": len(scores)}
    answerable = [bool(g) for g in golds]
    if not all(answerable):
        for name, keep in (("has_answer", True), ("no_answer", False)):
            part = [s for s, a in zip(scores, answerable, strict=True) if a == keep]
            means = _means(part)
            result.update({f"{name}_exact_match": means["exact_match"], f"{name}_f1": means["f1"],
                           f"{name}_n": len(part)})
    return result


def best_null_threshold(
    null_margins: Sequence[float], span_f1: Sequence[float], answerable: Sequence[bool]
) -> tuple[float, float]:
    """The threshold on (null score - best span score) that maximises mean F1, and that F1.

    A question is answered "no answer" when its margin exceeds the threshold. ``span_f1`` is each
    question's F1 when it is answered with its best span; abstaining scores 1 on unanswerable questions
    and 0 on answerable ones. Sweeping the sorted margins visits every distinct decision."""
    n = len(null_margins)
    if n == 0:
        return 0.0, 0.0
    order = sorted(range(n), key=lambda k: -null_margins[k])
    score = sum(span_f1)  # threshold above every margin: every question answered
    best, best_threshold = score, max(null_margins) + 1.0
    for position, i in enumerate(order):
        # Below margin i, question i abstains; questions with equal margins switch together.
        score += (0.0 if answerable[i] else 1.0) - span_f1[i]
        below = null_margins[order[position + 1]] if position + 1 < n else null_margins[i] - 2.0
        if below != null_margins[i] and score > best:  # after the last of equal margins
            best, best_threshold = score, (null_margins[i] + below) / 2
    return float(best_threshold), best / n


def _means(scores: Sequence[tuple[float, float]]) -> dict[str, float]:
    if not scores:
        return {"exact_match": 0.0, "f1": 0.0}
    return {"exact_match": sum(s[0] for s in scores) / len(scores), "f1": sum(s[1] for s in scores) / len(scores)}
