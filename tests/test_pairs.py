"""Contrastive pair sampling (the first stage of a SetFit-style strategy, issue 12)."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import pytest

from transferlm.strategies.pairs import sample_pairs, similarity


def test_pairs_are_balanced_correct_and_seeded():
    labels = ["a"] * 30 + ["b"] * 5 + ["c"] * 1  # imbalanced, one class with a single example
    pairs = list(sample_pairs(labels, 1000, seed=3))
    assert len(pairs) == 1000
    kinds = Counter(target for _, _, target in pairs)
    assert kinds == {1.0: 500, 0.0: 500}
    for a, b, target in pairs:
        assert a != b and target == (1.0 if labels[a] == labels[b] else 0.0)
    assert pairs == list(sample_pairs(labels, 1000, seed=3))
    assert pairs != list(sample_pairs(labels, 1000, seed=4))
    anchors = Counter(labels[a] for a, _, t in pairs if t == 0.0)
    assert anchors["a"] > anchors["b"] > 0  # negatives anchor on examples uniformly, so by class size


def test_multi_label_targets_are_the_jaccard_similarity():
    labels = [frozenset({"x"}), frozenset({"x"}), frozenset({"x", "y"}), frozenset({"z"})]
    assert similarity(labels[0], labels[2]) == 0.5
    pairs = list(sample_pairs(labels, 200, seed=0))
    positives = [(a, b) for a, b, t in pairs[::2]]
    assert all(labels[a] == labels[b] for a, b in positives)
    negatives = pairs[1::2]
    assert all(not (labels[a] & labels[b]) and t == 0.0 for a, b, t in negatives)


def test_memory_does_not_grow_with_the_square_of_the_examples():
    labels = [i % 10 for i in range(200_000)]
    tracemalloc.start()
    stream = sample_pairs(labels, 10**9, seed=0)  # a billion pairs: only ever drawn
    for _ in range(10_000):
        next(stream)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20  # the class index over 200,000 examples, nothing per pair


@pytest.mark.parametrize(("labels", "message"), [
    (["a", "b", "c"], "a label shared by at least two examples"),
    (["a", "a", "a"], "at least two different labels"),
    ([frozenset({"x", "y"}), frozenset({"x", "y"}), frozenset({"y", "z"})], "no label in common"),
])
def test_impossible_pairs_are_explained(labels, message):
    with pytest.raises(ValueError, match=message):
        next(sample_pairs(labels, 10, seed=0))
