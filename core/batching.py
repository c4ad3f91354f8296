"""Token-budget micro-batches: length-sorted rows packed up to a padded-token budget, in shuffled order.

A fixed number of rows per step wastes a GPU on short rows (a step is mostly fixed overhead) and runs out of
memory on long ones. Here a micro-batch holds as many rows of similar length as fit in `max_tokens` padded
tokens (capped at `max_rows`), so every step carries about the same work: many short rows or a few long ones.
Rows are sorted by length inside shuffled pools, so padding stays small but batches still mix the data, and the
order of the batches is reshuffled each epoch. Pure Python (the sampler protocol needs no torch import).
"""
from __future__ import annotations

import random
from typing import Iterator

POOL = 2048  # rows sorted together: large enough for little padding, small enough to keep batches varied


def budget_batches(lengths: list[int], max_tokens: int, max_rows: int, seed: int,
                   pool: int = POOL) -> list[list[int]]:
    """Row indices grouped into micro-batches whose rows × longest row ≤ max_tokens (one row at least)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            new_longest = max(longest, lengths[i])
            if batch and ((len(batch) + 1) * new_longest > max_tokens or len(batch) >= max_rows):
                batches.append(batch)
                batch, new_longest = [], lengths[i]
            batch.append(i)
            longest = new_longest
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    if batches:  # the most padded tokens first: a batch that does not fit fails at step 1, not hours later
        big = max(range(len(batches)), key=lambda b: len(batches[b]) * max(lengths[i] for i in batches[b]))
        batches.insert(0, batches.pop(big))
    return batches


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> tuple[int, int]:
    """(real tokens, padded tokens) over the batches: how much of the work is padding."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return real, padded


class TokenBudgetSampler:
    """A batch sampler for torch's DataLoader (`batch_sampler=`): a new arrangement each epoch."""

    def __init__(self, lengths: list[int], max_tokens: int, max_rows: int, seed: int = 42):
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.max_rows = max_rows
        self.seed = seed
        self.epoch = 0
        self._len = len(budget_batches(self.lengths, max_tokens, max_rows, seed))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        yield from budget_batches(self.lengths, self.max_tokens, self.max_rows, self.seed + self.epoch)

    def __len__(self) -> int:
        # Packing is greedy over shuffled pools, so other epochs can differ by a batch or two; the Trainer uses
        # this to size the schedule and simply ends an epoch when the iterator does.
        return self._len


def fit_budget_to_updates(lengths: list[int], max_tokens: int, max_rows: int, grad_accum: int, epochs: float,
                          min_updates: int, floor_tokens: int, seed: int = 42) -> int:
    """The largest budget ≤ max_tokens that still gives `min_updates` optimizer steps (never below floor_tokens).

    A small export with a large budget would train in a handful of steps: too few updates to learn from.
    """
    floor = min(floor_tokens, max_tokens)
    budget = max_tokens
    while True:
        n = len(budget_batches(lengths, budget, max_rows, seed))
        if (n // max(grad_accum, 1)) * epochs >= min_updates or budget <= floor:
            return budget
        budget = max(budget // 2, floor)
