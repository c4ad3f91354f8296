"""When this process's start-up began: the one clock behind a run's "first step N s after start" (issue 15's
start-up goal: under 10 s to the first step, where Unsloth spends 26-33 s importing and 45 s compiling) and the
TUI's "ready in N s" (its first paint).

On Linux (and WSL) the process's age comes from /proc, so the interpreter's start and every import count;
elsewhere the clock starts when `core` is first imported (core/__init__.py imports this module first). The workers
of a data-parallel run inherit their launcher's clock (`ENV`, set by core.train.distributed): their start-up began
with the command the user typed, not when the launcher spawned them. No torch here (the TUI imports it to paint).
"""
from __future__ import annotations

import os
import time

ENV = "GENAPTITUDE_STARTED_AT"


def _process_age() -> float:
    """Seconds since this process started (/proc), 0 where that cannot be read."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        start_ticks = int(stat[19])  # field 22 of stat, counted after "pid (comm)"
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


_IMPORTED_AT = time.time() - _process_age()  # when this process started, on the wall clock


def started_at() -> float:
    """Wall-clock time (time.time()) this run's start-up began: the launcher's (`ENV`), else this process's."""
    try:
        return float(os.environ[ENV])
    except (KeyError, ValueError):
        return _IMPORTED_AT


def seconds_since_start(now: float | None = None) -> float:
    return (time.time() if now is None else now) - started_at()
