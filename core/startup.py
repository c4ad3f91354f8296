"""When this run's start-up began: the clock behind "first step N s after start" (issue 15's start-up goal: under
10 s to the first step, where Unsloth spends 26-33 s importing and 45 s compiling).

The clock starts when `core` is first imported (core/__init__.py imports this module first), so the imports of
torch, transformers and the rest count; only the interpreter's own start (~50 ms) comes before it. The workers of a
data-parallel run inherit their launcher's clock (`ENV`, set by core.train.distributed): their start-up began with
the command the user typed, not when the launcher spawned them. No torch here.
"""
from __future__ import annotations

import os
import time

ENV = "GENAPTITUDE_STARTED_AT"
_IMPORTED_AT = time.time()


def started_at() -> float:
    """Wall-clock time (time.time()) this run's start-up began: the launcher's (`ENV`), else this process's."""
    try:
        return float(os.environ[ENV])
    except (KeyError, ValueError):
        return _IMPORTED_AT


def seconds_since_start(now: float | None = None) -> float:
    return (time.time() if now is None else now) - started_at()
