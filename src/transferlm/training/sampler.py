"""Deterministic batch plans: the same global batches for any number of processes.

A plan for (seed, epoch) is a list of *global* batches (indices); each process takes its slice.
Because the plan depends only on the global batch size, 1 process with batch 8 and 2 processes
with batch 4 see identical optimizer steps, and a resumed run can skip to any position.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from transferlm.config.schema import TrainConfig

MEGABATCH = (
    50  # global batches pooled before sorting by length: long enough to cut padding, short enough to stay random
)


def plan_epoch(
    lengths: Sequence[int], global_batch: int, seed: int, epoch: int, group_by_length: bool, shuffle: bool = True
) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng = random.Random(seed * 1_000_003 + epoch)
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        pool = MEGABATCH * global_batch
        chunks = [sorted(order[i : i + pool], key=lambda j: -lengths[j]) for i in range(0, len(order), pool)]
        order = [j for chunk in chunks for j in chunk]
    batches = [order[i : i + global_batch] for i in range(0, len(order), global_batch)]
    if group_by_length and shuffle:
        rng.shuffle(batches)  # otherwise every megabatch would run longest-first
    return batches


CPU_BATCH_TOKENS = 4096  # train.max_batch_tokens auto on a CPU: MiniLM's 32 x 128 default batch in one pass


def max_batch_tokens(config: TrainConfig, device_type: str) -> int | None:
    """``train.max_batch_tokens`` resolved: auto is ``CPU_BATCH_TOKENS`` on a CPU and no limit on an accelerator."""
    if config.max_batch_tokens == "auto":
        return CPU_BATCH_TOKENS if device_type == "cpu" else None
    return config.max_batch_tokens


def shard(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's contiguous share of a global batch; sizes differ by at most one."""
    base, extra = divmod(len(batch), world)
    start = rank * base + min(rank, extra)
    return list(batch[start : start + base + (1 if rank < extra else 0)])



def token_chunks(batch: Sequence[int], lengths: Sequence[int], max_tokens: int | None) -> list[list[int]]:
    """A batch as micro-batches whose padded size (examples x longest) stays within ``max_tokens``, longest first;
    an example longer than the budget forms a micro-batch of its own. None: the batch whole."""
    if max_tokens is None:
        return [list(batch)]
    chunks: list[list[int]] = []
    for j in sorted(batch, key=lambda j: -lengths[j]):
        # Longest first: a chunk's first example is its longest, so its padded size is len(chunk) x that length.
        if chunks and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= max_tokens:
            chunks[-1].append(j)
        else:
            chunks.append([j])
    return chunks
