"""Token-budget micro-batches: length-sorted rows packed up to a padded-token budget, in shuffled order.

A fixed number of rows per step wastes a GPU on short rows (a step is mostly fixed overhead) and runs out of
memory on long ones. Here a micro-batch holds as many rows of similar length as fit in `max_tokens` padded
tokens (capped at `max_rows`), so every step carries about the same work: many short rows or a few long ones,
and no step carries a remainder of a few rows at almost full cost (`even_split`). Rows are sorted by length
inside shuffled pools, so padding stays small but batches still mix the data, and the order of the batches is
reshuffled each epoch. Pure Python (the sampler protocol needs no torch import).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

POOL = 2048  # rows sorted together: large enough for little padding, small enough to keep batches varied


def budget_batches(lengths: list[int], max_tokens: int, max_rows: int, seed: int,
                   pool: int = POOL, workers: int = 1) -> list[list[int]]:
    """Row indices grouped into micro-batches whose rows × longest row ≤ max_tokens (one row at least), of even
    size: as few batches as greedy packing makes, each carrying about the same padded tokens (`even_split`).

    With `workers` > 1 (data-parallel), each run of `workers` consecutive batches is one step's, one batch a worker
    (accelerate's sharding: batch i goes to worker i % workers), and they are neighbours in length order: the
    workers of a step get rows of about the same length, so none waits at the gradient all-reduce for another
    one's longer rows (attention's cost grows with the row length at the same token count)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    rng.shuffle(order)
    units: list[list[list[int]]] = []  # one step's batches: `workers` of them
    spare: list[list[int]] = []  # the last batches of a pool that make no whole step
    starts = list(range(0, len(order), pool))
    if len(starts) > 1 and len(order) - starts[-1] < pool // 2:  # a last pool of a few rows: one with the one before
        starts.pop()
    for start, end in zip(starts, starts[1:] + [len(order)]):
        chunk = sorted(order[start:end], key=lambda i: lengths[i])
        steps, left = _in_steps(even_split(chunk, lengths, max_tokens, max_rows), workers)  # in length order
        units += steps
        spare += left
    spare.sort(key=lambda b: max(lengths[i] for i in b))
    steps, rest = _in_steps(spare, workers)  # rest: fewer than `workers`, the last step
    units += steps
    rng.shuffle(units)
    if units:  # the most padded tokens first: a batch that does not fit fails at step 1, not hours later
        def padded(b: list[int]) -> int:
            return len(b) * max(lengths[i] for i in b)

        big = max(range(len(units)), key=lambda u: max(padded(b) for b in units[u]))
        units.insert(0, units.pop(big))
    return [b for unit in units for b in unit] + rest


def _in_steps(batches: list[list[int]], workers: int) -> tuple[list[list[list[int]]], list[list[int]]]:
    """Consecutive batches grouped `workers` to a step, and those left over (fewer than `workers`)."""
    whole = len(batches) - len(batches) % workers
    return [batches[k:k + workers] for k in range(0, whole, workers)], batches[whole:]


def _pack(chunk: list[int], lengths: list[int], cap: int, max_rows: int) -> list[list[int]]:
    """Greedy packing of length-sorted rows: each batch takes rows while rows × longest ≤ cap (one row at least)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in chunk:
        if batch and ((len(batch) + 1) * lengths[i] > cap or len(batch) >= max_rows):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def even_split(chunk: list[int], lengths: list[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Length-sorted rows cut into as many batches as greedy packing needs, each about an equal share of the tokens.

    Greedy packing fills every batch to the budget and leaves the remainder to a last one, which can hold a few
    rows: a step of almost full cost (kernel launches, the optimizer, the LoRA weights' passes) for little work.
    Here the count comes first (greedy's, the fewest that fit), then each batch takes its share of the tokens
    still to place (a share stretched by 1-8% when padding would push the last batch over the budget). Should
    that still leave a last batch over the budget, the fallback is the smallest cap that still packs into that
    count (the largest batch as small as it can be).
    """
    greedy = _pack(chunk, lengths, max_tokens, max_rows)
    n = len(greedy)
    if n <= 1:
        return greedy
    for stretch in (1.0, 1.01, 1.02, 1.04, 1.08):  # padding grows toward the long rows: earlier batches a bit fuller
        shared = _share(chunk, lengths, max_tokens, max_rows, n, stretch)
        if shared is not None:
            return shared
    lo, hi = max(-(-sum(lengths[i] for i in chunk) // n), 1), max_tokens
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_pack(chunk, lengths, mid, max_rows)) <= n:
            hi = mid
        else:
            lo = mid + 1
    return _pack(chunk, lengths, lo, max_rows)


def _share(chunk: list[int], lengths: list[int], cap: int, max_rows: int, n: int,
           stretch: float) -> list[list[int]] | None:
    """`n` batches, each closest to `stretch` × (tokens left ÷ batches left) in real tokens; None when the last
    does not fit."""
    left = sum(lengths[i] for i in chunk)
    batches: list[list[int]] = []
    pos = 0
    for k in range(n, 1, -1):
        target = stretch * left / k
        batch, real = [chunk[pos]], lengths[chunk[pos]]
        pos += 1
        while pos < len(chunk) - (k - 1):  # every later batch keeps a row at least
            nxt = lengths[chunk[pos]]
            if (len(batch) + 1) * nxt > cap or len(batch) >= max_rows or real + nxt / 2 > target:
                break
            batch.append(chunk[pos])
            real += nxt
            pos += 1
        batches.append(batch)
        left -= real
    last = chunk[pos:]
    if len(last) > max_rows or (len(last) > 1 and len(last) * lengths[last[-1]] > cap):
        return None
    return batches + [last]


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> tuple[int, int]:
    """(real tokens, padded tokens) over the batches: how much of the work is padding."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return real, padded


class TokenBudgetSampler:
    """A batch sampler for torch's DataLoader (`batch_sampler=`): a new arrangement each epoch."""

    def __init__(self, lengths: list[int], max_tokens: int, max_rows: int, seed: int = 42, workers: int = 1):
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.max_rows = max_rows
        self.seed = seed
        self.workers = workers  # data-parallel processes the batches are dealt to (`budget_batches`)
        self.epoch = 0
        self._len = len(budget_batches(self.lengths, max_tokens, max_rows, seed, workers=workers))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        yield from budget_batches(self.lengths, self.max_tokens, self.max_rows, self.seed + self.epoch,
                                  workers=self.workers)

    def __len__(self) -> int:
        # Packing depends on the shuffled pools, so other epochs can differ by a batch or two; the Trainer uses
        # this to size the schedule and simply ends an epoch when the iterator does.
        return self._len


@dataclass(frozen=True)
class UpdatePlan:
    """How a run batches its rows and how many optimizer steps that makes."""

    batch_tokens: int  # token budget per micro-batch (0: fixed rows per micro-batch)
    grad_accum: int
    batch_size: int  # rows per micro-batch (with a token budget: the most it may hold)
    updates: int  # optimizer steps over the whole run (all epochs, all workers together)


def plan_updates(lengths: list[int], *, batch_tokens: int, batch_size: int, grad_accum: int, epochs: float,
                 min_updates: int, workers: int = 1, seed: int = 42, floor_tokens: int = 256) -> UpdatePlan:
    """The batching a run uses: accumulation, then the token budget (or the rows of a fixed-size micro-batch) are
    halved until the run makes `min_updates` optimizer steps (never below one row, or `floor_tokens`).

    A small export with a large budget would train in a handful of steps: LoRA learns from the number of updates
    more than from their size, so a 300-row export at a 32k-token budget (~20 updates) taught nothing.
    """
    def updates(budget: int, accum: int, rows: int) -> int:
        n = len(budget_batches(lengths, budget, rows, seed)) if budget > 0 else -(-len(lengths) // rows)
        return int((n // max(accum * workers, 1)) * epochs)

    budget, accum, rows = batch_tokens, grad_accum, batch_size
    while updates(budget, accum, rows) < min_updates:
        if accum > 1:  # accumulation only saved memory: fewer micro-batches per update first
            accum //= 2
        elif budget > floor_tokens:
            budget = max(budget // 2, floor_tokens)
        elif budget <= 0 and rows > 1:  # fixed rows per micro-batch: fewer rows
            rows //= 2
        else:
            break
    return UpdatePlan(budget, accum, rows, updates(budget, accum, rows))


FEW_UPDATES = 50  # below this many optimizer steps a LoRA rarely learns an export's answers (issue 18's GPU runs:
#                   ~20 steps taught nothing; 130-190 steps scored 0.9-1.0 held-out exact match)


def plan_for(config, lengths: list[int], workers: int = 1) -> UpdatePlan:
    """`plan_updates` with a TrainConfig's values: what the engine runs, and what the TUI's preset tab shows
    before a run (there from typical lengths)."""
    if config.max_steps > 0:
        return UpdatePlan(config.batch_tokens, config.grad_accum, config.batch_size, config.max_steps)
    return plan_updates(lengths, batch_tokens=config.batch_tokens, batch_size=config.batch_size,
                        grad_accum=config.grad_accum, epochs=config.epochs, min_updates=config.min_updates,
                        workers=workers, seed=config.seed)


def few_updates_warning(plan: UpdatePlan, rows: int) -> str | None:
    """A sentence when a run will make too few optimizer steps to learn, with the way out."""
    if plan.updates >= FEW_UPDATES:
        return None
    return (f"only {plan.updates} optimizer steps ({rows} rows): too few for the adapter to learn; train more "
            f"epochs (e.g. {-(-FEW_UPDATES * 2 // max(plan.updates, 1))}x as many) or export more rows")
