"""Sentence pairs for contrastive fine-tuning from labelled examples (the first stage of SetFit, Tunstall et
al., 2022): the encoder learns to place examples of one class close together and others apart.

Pairs are drawn, never enumerated: all n² combinations of even a few thousand examples would not fit in
memory, so ``sample_pairs`` yields them one at a time from a seeded generator, alternating a positive pair
(two examples that share their labels) and a negative one (no label in common), so the two kinds stay
balanced whatever the class sizes. Each pair's target is the Jaccard similarity of the two label sets: 1
for the same single label, 0 for different ones, and in between for multi-label examples that overlap.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator, Sequence

Label = Hashable  # a class, or a frozenset of classes (multi-label)


def label_set(label: Label) -> frozenset:
    return label if isinstance(label, frozenset) else frozenset([label])


def similarity(a: Label, b: Label) -> float:
    """Jaccard similarity of two examples' label sets."""
    x, y = label_set(a), label_set(b)
    union = x | y
    return len(x & y) / len(union) if union else 1.0


def sample_pairs(labels: Sequence[Label], n_pairs: int, seed: int) -> Iterator[tuple[int, int, float]]:
    """``n_pairs`` pairs of example indices with their target similarity, half positive (same label set) and
    half negative (disjoint sets), in a seeded order. Memory is O(examples), not O(pairs)."""
    groups: dict[frozenset, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label_set(label), []).append(index)
    positive_groups = [members for members in groups.values() if len(members) > 1]
    if not positive_groups:
        raise ValueError("contrastive pairs need a label shared by at least two examples")
    if len(groups) < 2:
        raise ValueError("contrastive pairs need at least two different labels")
    disjoint = {key: [other for other in groups if not (other & key)] for key in groups}
    if not any(disjoint.values()):
        raise ValueError("contrastive pairs need two examples with no label in common")
    rng = random.Random(seed)
    positive_weights = [len(members) for members in positive_groups]  # each example anchors equally often
    made = 0
    while made < n_pairs:
        if made % 2 == 0:
            a, b = rng.sample(rng.choices(positive_groups, positive_weights)[0], 2)
        else:
            a = rng.randrange(len(labels))
            others = disjoint[label_set(labels[a])]
            if not others:  # (multi-label: this example overlaps every other label set) another anchor
                continue
            b = rng.choice(groups[rng.choice(others)])
        yield a, b, similarity(labels[a], labels[b])
        made += 1
