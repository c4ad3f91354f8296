"""Which GPUs a command uses: chosen (core/gpus.py) and pinned before torch starts CUDA, then said to the user."""
from __future__ import annotations

import sys


def use_gpus(count: int = 1, ids: tuple[int, ...] | None = None, *, say=None):
    """Choose this command's GPUs (core/gpus.py) and pin this process to them before torch starts CUDA; children
    inherit the variables. `say(text, level)` tells the user which and why. None inside a data-parallel worker,
    whose launcher gave it its GPUs."""
    from core import gpus
    from core.train import distributed

    if distributed.is_worker():
        return None
    plan = gpus.plan(1 if distributed.rehearsal() else count, tuple(ids or ()))
    gpus.pin(plan)
    if say:
        tell_gpus(plan, say)
    return plan


def tell_gpus(plan, say, need_gib: float | None = None) -> None:
    """Which GPUs and why, then a warning for each one other processes already fill (before the model loads)."""
    from core.gpus import busy_warnings

    if plan is None or not plan.gpus:
        return
    say(f"{plan.reason}; CUDA_VISIBLE_DEVICES={plan.env['CUDA_VISIBLE_DEVICES']}", "info")
    for warning in busy_warnings(plan.gpus, need_gib):
        say(warning, "warning")


def say_stderr(text: str, level: str) -> None:
    print(f"{level}: {text}", file=sys.stderr, flush=True)
