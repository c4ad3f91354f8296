"""What a run says, kept in its folder: its events in events.jsonl (`Journal`: whoever attaches replays the file,
then follows it) and, for a detached run, its stdout and stderr in train.log (`redirect_output`)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable


class Journal:
    """Passes each event on and appends it to the run folder's events.jsonl once the run owns the folder (events
    sent before that are written first). Whoever attaches later replays this file, then follows it."""

    PROGRESS_EVERY_S = 0.5  # tokenising reports every batch; a follower needs only a few a second

    def __init__(self, emit: Callable) -> None:
        self.emit = emit
        self._early: list = []
        self._fh = None
        self._last_progress = 0.0

    def __call__(self, event) -> None:
        self.emit(event)
        if getattr(event, "kind", "") == "progress":
            now = time.monotonic()
            if now - self._last_progress < self.PROGRESS_EVERY_S and event.done < event.total:
                return
            self._last_progress = now
        if self._fh is None:
            if len(self._early) < 1000:
                self._early.append(event)
            return
        self._write(event)

    def open(self, path: Path) -> None:
        self._fh = open(path, "a", encoding="utf-8")
        early, self._early = self._early, []
        for event in early:
            self._write(event)

    def _write(self, event) -> None:
        try:
            self._fh.write(event.to_json() + "\n")
            self._fh.flush()  # a follower sees each event as it happens; the OS keeps it past a kill -9
        except OSError:
            pass  # a full disk must not turn into a second error here; training reports its own

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (tracebacks included) to `path`, appended: a detached run's log."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
