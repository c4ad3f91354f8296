"""Token-budget micro-batches (core/data/batching.py) and how a run uses them."""
from __future__ import annotations

import json
import random

import pytest

from core import events as ev
from core.data.batching import TokenBudgetSampler, budget_batches, padded_tokens, plan_updates
from core.presets import config_for
from core.train.bench import synthetic_rows
from core.train.engine import train


def lengths(n=3000, lo=128, hi=1024, seed=0):
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def test_every_row_once_within_budget_and_row_cap():
    ls = lengths()
    batches = budget_batches(ls, max_tokens=16384, max_rows=64, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(ls)))
    for b in batches:
        assert len(b) <= 64
        assert len(b) == 1 or len(b) * max(ls[i] for i in b) <= 16384


def test_far_less_padding_than_fixed_random_batches():
    ls = lengths()
    real, padded = padded_tokens(ls, budget_batches(ls, 16384, 256, seed=1))
    order = list(range(len(ls)))
    random.Random(1).shuffle(order)
    fixed = [order[i:i + 16] for i in range(0, len(order), 16)]
    real_f, padded_f = padded_tokens(ls, fixed)
    assert real == real_f
    assert padded / real < 1.02  # length-sorted pools: under 2% padding
    assert padded_f / real_f > 1.3  # 16 random rows of 128–1024 tokens: ~40% padding


def test_largest_batch_first_so_memory_problems_show_at_step_one():
    ls = lengths(seed=3)
    batches = budget_batches(ls, 8192, 256, seed=3)
    cost = [len(b) * max(ls[i] for i in b) for b in batches]
    assert cost[0] == max(cost)


def test_sampler_reshuffles_each_epoch_and_covers_all_rows():
    ls = lengths(500)
    s = TokenBudgetSampler(ls, 4096, 64, seed=0)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert first != second
    assert sorted(i for b in second for i in b) == list(range(500))
    assert abs(len(s) - len(second)) <= 2


def test_small_exports_get_a_smaller_budget_large_ones_keep_it():
    short = lengths(240, 80, 300)  # the bundled export's size and row lengths
    small = plan_updates(short, batch_tokens=32768, batch_size=256, grad_accum=1, epochs=1.0, min_updates=64)
    assert small.batch_tokens < 32768 and small.updates >= 64
    assert len(budget_batches(short, small.batch_tokens, 256, 42)) == small.updates
    big = lengths(20000, 80, 300)
    kept = plan_updates(big, batch_tokens=32768, batch_size=256, grad_accum=1, epochs=1.0, min_updates=64)
    assert kept.batch_tokens == 32768 and kept.updates >= 64


@pytest.mark.slow
def test_a_run_with_a_token_budget_shrinks_it_for_a_small_export_and_says_so(tiny_qwen_dir, small_dataset, tmp_path):
    events = []
    cfg = config_for("cpu", model=str(tiny_qwen_dir), batch_tokens=32768, batch_size=256, epochs=1, min_updates=100,
                     eval_fraction=0.1)
    out = train(cfg, str(small_dataset), str(tmp_path / "out"), on_event=events.append)
    said = [e.message for e in events if isinstance(e, ev.LogLine) and "small dataset" in e.message]
    assert said and "≤256 tokens × 1 per update instead of ≤32,768 tokens × 1" in said[0]
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["batch_tokens"] == 256
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert 30 <= started.total_steps <= 36  # ~one row a step: as many updates as 36 rows allow, not one batch
    warned = [e.message for e in events if isinstance(e, ev.LogLine) and e.level == "warning"]
    assert any(f"only {started.total_steps} optimizer steps (36 rows): too few for the adapter to learn" in w
               for w in warned)


def _greedy(ls, max_tokens, max_rows, seed, pool=2048):
    """The packing before even micro-batches: each length-sorted pool filled batch by batch up to the budget."""
    order = list(range(len(ls)))
    random.Random(seed).shuffle(order)
    out = []
    for start in range(0, len(order), pool):
        batch = []
        for i in sorted(order[start:start + pool], key=lambda i: ls[i]):
            if batch and ((len(batch) + 1) * ls[i] > max_tokens or len(batch) >= max_rows):
                out.append(batch)
                batch = []
            batch.append(i)
        out.append(batch)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("budget,rows", [(32768, 256), (16384, 128), (8192, 256)])
def test_micro_batches_are_even_no_more_of_them_and_no_more_padding(budget, rows):
    # bench's workload: rows of 128-1024 tokens, as many as 30 steps of modern-bf16 take
    ls = [len(r) for r in synthetic_rows(30 * 256 + 8, 1000, 128, 1024)["input_ids"]]
    batches = budget_batches(ls, budget, rows, seed=42)
    cost = [len(b) * max(ls[i] for i in b) for b in batches]
    assert min(cost) >= 0.85 * max(cost), sorted(cost)[:5]  # no small tail batch at almost full cost
    assert max(cost) <= budget and max(len(b) for b in batches) <= rows
    assert sorted(i for b in batches for i in b) == list(range(len(ls)))
    old = _greedy(ls, budget, rows, seed=42)
    old_cost = [len(b) * max(ls[i] for i in b) for b in old]
    assert min(old_cost) < 0.5 * max(old_cost)  # what greedy packing did: a remainder batch per pool
    assert len(batches) <= len(old)
    assert padded_tokens(ls, batches)[1] <= padded_tokens(ls, old)[1] * 1.001  # moved cuts: within 0.1% padding
    assert budget_batches(ls, budget, rows, seed=42) == batches  # the same seed, the same batches


def test_a_few_rows_left_after_the_full_pools_do_not_make_small_batches():
    ls = lengths(2048 + 40, seed=5)  # 40 rows past a full pool: greedy made one ~23k-token batch of them
    batches = budget_batches(ls, 32768, 256, seed=5)
    cost = [len(b) * max(ls[i] for i in b) for b in batches]
    assert min(cost) >= 0.85 * max(cost)


@pytest.mark.parametrize("multiple", [0, 8])
def test_the_numpy_padding_gives_trls_batch(multiple):
    """core.data.collate.pad_batch against TRL's collator (what it replaces outside padding-free): same tensors."""
    import random

    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from core.data.collate import pad_batch

    rng = random.Random(multiple)
    rows = []
    for n in (5, 17, 1, 12):
        ids = [rng.randrange(3, 500) for _ in range(n)]
        rows.append({"input_ids": ids, "labels": [-100 if rng.random() < 0.4 else t for t in ids]})
    rows.append({"input_ids": [7, 8, 9]})  # no labels: the ids are the labels, as TRL reads it
    want = DataCollatorForLanguageModeling(pad_token_id=2, pad_to_multiple_of=multiple or None)(rows)
    got = pad_batch(rows, 2, multiple)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key
    assert got["input_ids"].shape == (5, 24 if multiple else 17)


def test_workers_of_a_step_get_rows_of_about_the_same_length():
    """Data-parallel: accelerate deals batch i to worker i % n; with `workers` the batches of one step are length
    neighbours, so no GPU waits at the all-reduce for another's longer rows. Every row still comes once."""
    from accelerate.data_loader import BatchSamplerShard

    ls = lengths(6000)

    def gaps(sampler_workers: int) -> float:
        s = TokenBudgetSampler(ls, 16384, 256, seed=42, workers=sampler_workers)
        shards = [list(BatchSamplerShard(s, num_processes=2, process_index=r)) for r in range(2)]
        seen = sorted(i for shard in shards for b in shard for i in b)
        assert set(seen) == set(range(len(ls)))  # (an odd count of batches: the last step repeats one)
        longest = [[max(ls[i] for i in b) for b in step] for step in zip(*shards)]
        return sum((max(s) - min(s)) / max(s) for s in longest) / len(longest)

    assert gaps(1) > 0.2  # dealt blindly: the two workers' longest rows differ by ~30% on average
    assert gaps(2) < 0.06  # paired: ~3%


def test_paired_batches_keep_the_largest_step_first_and_every_row_once():
    ls = lengths(seed=5)
    batches = budget_batches(ls, 8192, 256, seed=5, workers=2)
    assert sorted(i for b in batches for i in b) == list(range(len(ls)))
    cost = [len(b) * max(ls[i] for i in b) for b in batches]
    assert max(cost[:2]) == max(cost)
    assert len(batches) == len(budget_batches(ls, 8192, 256, seed=5))  # the same batches, dealt in pairs
