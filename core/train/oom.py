"""Out-of-memory recovery: split the micro-batch in halves and go on from the same step.

The loss of each half is divided by the same `num_items_in_batch` as the whole, so the two halves' gradients add up
to exactly the whole micro-batch's: the effective batch and the step count do not change. The gradients accumulated
before the failed micro-batch are restored first. The split factor only grows, so the run does not oscillate.
"""
from __future__ import annotations

import os

import torch

INJECT_ENV = "GENAPTITUDE_TRAINER_INJECT_OOM"  # tests: "N" raises OOM for any micro-batch larger than N rows


def injected_oom(rows: int) -> None:
    limit = os.environ.get(INJECT_ENV)
    if limit and rows > int(limit):
        raise torch.OutOfMemoryError(f"injected out of memory: micro-batch of {rows} rows > {limit}")


def split_inputs(inputs: dict, parts: int) -> list[dict]:
    if parts <= 1:
        return [inputs]
    inputs = {k: v for k, v in inputs.items() if k != "loss_index"}  # flat positions of the whole batch: recomputed
    rows = inputs["input_ids"].shape[0]
    size = -(-rows // parts)
    out = []
    for start in range(0, rows, size):
        out.append({k: (v[start:start + size] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == rows
                        else v) for k, v in inputs.items()})
    return out


def save_grads(params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for p in params]


def restore_grads(params: list[torch.Tensor], saved: list[torch.Tensor | None]) -> None:
    for p, g in zip(params, saved):
        p.grad = g


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
