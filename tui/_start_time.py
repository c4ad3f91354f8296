"""When this process started, so the app can report its own start-up time (time to first paint).

Imported first by `tui.app`. On Linux (and WSL) the process age comes from /proc, so interpreter start-up and
imports are counted; elsewhere the clock starts when this module is imported.
"""
from __future__ import annotations

import os
import time


def _process_age() -> float:
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        start_ticks = int(stat[19])  # field 22 of stat, counted after "pid (comm)"
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


PROCESS_START = time.monotonic() - _process_age()


def seconds_since_start() -> float:
    return time.monotonic() - PROCESS_START
