"""Training in child processes whose JSON event stream is read back: the TUI's run process, and the one process
per GPU of a data-parallel run. The first worker's stdout carries the events; every worker's stderr is kept for
the error message. Stop sends SIGINT to every worker (each finishes its step, the adapter and a checkpoint are
saved); a worker that dies takes the others down instead of leaving them waiting on it forever.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Callable

from .errors import TrainerError
from .events import Event, Failed, Finished, from_dict

ROOT = str(Path(__file__).resolve().parent.parent)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, unbuffered, with the repository importable (a source checkout works without install)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p), **(extra or {})}


def run_training(config, dataset: str, output: str, envs: list[dict[str, str]], on_event: Callable[[Event], None],
                 stop_event: threading.Event, *, what: str = "training process", overwrite: bool = False,
                 resume: bool = False, skip_invalid: bool = False) -> Finished | None:
    """`python -m core train --json` with this whole `config` (a TrainConfig, through a temporary JSON file) in one
    process per env: the TUI's run process, or the workers of a data-parallel run."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
        json.dump(config.to_dict(), fh)
    cmd = [sys.executable, "-m", "core", "train", "--config-json", fh.name, "--dataset", dataset, "--output", output,
           "--json"] + ["--overwrite"] * overwrite + ["--resume"] * resume + ["--skip-invalid"] * skip_invalid
    try:
        return run_workers(cmd, envs, on_event, stop_event, what=what)
    finally:
        Path(fh.name).unlink(missing_ok=True)


def run_workers(cmd: list[str], envs: list[dict[str, str]], on_event: Callable[[Event], None],
                stop_event: threading.Event, *, what: str = "training process") -> Finished | None:
    """Run one process per env; forward worker 0's events; return its Finished (None if it finished nothing).
    Raises TrainerError with the failing worker's own message, or its last stderr lines."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, encoding="utf-8", errors="replace", env=env, cwd=os.getcwd())
             for i, env in enumerate(envs)]
    tails: list[deque[str]] = [deque(maxlen=20) for _ in procs]
    failed: list[Failed] = []
    finished: list[Finished] = []
    done = threading.Event()

    first_dead: list[int] = []  # the worker that failed first: the others then fail only because it is gone

    def watch() -> None:
        stopped = False
        while not done.wait(0.2):
            for i, p in enumerate(procs):
                if not first_dead and p.poll() not in (None, 0):
                    first_dead.append(i)
            if stop_event.is_set() and not stopped and not finished:  # a finished run is only saving: let it
                stopped = True
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGINT)
            codes = [p.poll() for p in procs]
            if any(c not in (None, 0) for c in codes) and any(c is None for c in codes):
                for p in procs:  # one worker died: the others would wait for it in their next collective
                    if p.poll() is None:
                        p.terminate()

    def drain(i: int) -> None:
        for line in procs[i].stderr:
            tails[i].append(line.rstrip())

    threading.Thread(target=watch, daemon=True).start()
    for i in range(len(procs)):
        threading.Thread(target=drain, args=(i,), daemon=True).start()
    try:
        for line in procs[0].stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            data = json.loads(line)
            if "event" in data:
                event = from_dict(data)
                if isinstance(event, Failed):
                    failed.append(event)
                elif isinstance(event, Finished):
                    finished.append(event)
                on_event(event)
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        done.set()
    if all(c == 0 for c in codes) or (finished and all(c in (0, -signal.SIGINT) for c in codes)):
        return finished[-1] if finished else None  # a stop that landed after the adapter was saved is a success
    if failed and first_dead[:1] in ([], [0]):
        raise TrainerError(failed[-1].message, hint=failed[-1].hint)
    bad = first_dead[0] if first_dead else next(
        (i for i, c in enumerate(codes) if c not in (0, -signal.SIGINT, -signal.SIGTERM)), 0)
    tail = "\n".join(tails[bad])
    who = f"{what} {bad} of {len(procs)}" if len(procs) > 1 else f"the {what}"
    raise TrainerError(f"{who} ended with exit code {codes[bad]}",
                       hint=f"its last output:\n{tail}" if tail else "run the same settings with the CLI to see why")
