"""Training in other processes, and their events read back.

- A detached run (`start_run`, the TUI's): `python -m core train --detached` in a session of its own (no
  terminal, stdin from /dev/null), so closing the terminal, SIGHUP or kill -9 of the app leaves it training. It
  owns its run folder (core/runs/output.py: the lock) and appends its events to `events.jsonl` there; `follow` replays
  that file, then tails it, for the app that started the run and for any app or `attach` that comes later.
  `stop_run` sends the run's process SIGINT: it finishes its step, saves the adapter and a checkpoint.
- Data-parallel workers (`run_workers`): one process per GPU, children of the launcher. The first worker's stdout
  carries the events; every worker's stderr is kept for the error message. Stop sends SIGINT to every worker; a
  worker that dies takes the others down instead of leaving them waiting on it forever.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import InputError, TrainerError
from core.events import Event, Failed, Finished, LogLine, from_dict
from core.runs import output

ROOT = str(Path(__file__).resolve().parent.parent)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, unbuffered, with the repository importable (a source checkout works without install)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p), **(extra or {})}


def event_of(line: str | bytes) -> Event | None:
    """The event a JSON line of a run's stream holds; None for anything else (not JSON, not an event of ours)."""
    try:
        return from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError):  # JSONDecodeError is a ValueError; an unknown kind a KeyError
        return None


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
            if not line:
                continue
            event = event_of(line)
            if event is None:  # a library's print, or a line cut short: shown as it is, the run goes on
                event = LogLine(line)
            elif isinstance(event, Failed):
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


# -- detached runs -------------------------------------------------------------------------------------------
@dataclass
class Launch:
    proc: subprocess.Popen
    log: Path  # stdout and stderr until the run owns its folder (then <run>/train.log)

    @property
    def pid(self) -> int:
        return self.proc.pid


def launch_dir() -> Path:
    """Where a detached run's configuration and early output go (its folder is not its own yet)."""
    from core.runs.history import state_home

    folder = state_home() / "launches"
    folder.mkdir(parents=True, exist_ok=True)
    week = time.time() - 7 * 86400
    for old in folder.iterdir():  # launches of last week are of no use to anyone
        try:
            if old.stat().st_mtime < week:
                old.unlink()
        except OSError:
            pass
    return folder


def start_run(config, dataset: str, output_dir: str, *, overwrite: bool = False, resume: bool = False,
              skip_invalid: bool = False, env: dict[str, str] | None = None) -> Launch:
    """Start `train --detached` as a process of its own session (in `env`, default child_env()); returns at once."""
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{Path(output_dir).name}"
    folder = launch_dir()
    config_file, log = folder / f"{stem}.json", folder / f"{stem}.log"
    config_file.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    cmd = [sys.executable, "-m", "core", "train", "--detached", "--config-json", str(config_file),
           "--dataset", str(dataset), "--output", str(output_dir)] + ["--overwrite"] * overwrite + \
        ["--resume"] * resume + ["--skip-invalid"] * skip_invalid
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env or child_env(),
                                cwd=os.getcwd(), start_new_session=True)  # no terminal: no SIGHUP when it closes
    return Launch(proc, log)


def stop_run(output_dir: str | os.PathLike) -> output.Owner:
    """Ask the run that holds `output_dir` to stop (SIGINT: it finishes the step, saves adapter and checkpoint)."""
    import socket

    owner = output.inspect(output_dir)
    if owner is None or not owner.live:
        raise InputError(f"no run is going in {output.output_of(output_dir)}",
                         hint="see `genaptitude-trainer runs` for the runs that are")
    if owner.pid <= 0 or owner.host != socket.gethostname():
        raise InputError(f"the run in {output.output_of(output_dir)} runs on {owner.host}, not on this machine",
                         hint="stop it there (genaptitude-trainer stop)")
    os.kill(owner.pid, signal.SIGINT)
    return owner


def _last_failure(log: Path) -> Failed | None:
    """The Failed event a run printed (as JSON) before it owned its folder."""
    found = None
    for row in output.metrics_rows(log):
        if row.get("event") == "failed":
            found = from_dict(row)
    return found


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def follow(output_dir: str | os.PathLike, on_event: Callable[[Event], None], *,
           stop_event: threading.Event | None = None, leave_event: threading.Event | None = None,
           launch: Launch | None = None, replay: bool = True, poll: float = 0.2) -> Finished | None:
    """Replay the run's events.jsonl from its start, then follow it until the run ends. Returns its Finished,
    or None when `leave_event` was set (the run goes on). `stop_event` stops the run (SIGINT to its process).
    Raises TrainerError when the run failed or its process ended without finishing. With `launch` (a run this
    process started), waits for that process to own the folder, and reports why if it never does."""
    out = output.output_of(output_dir)
    events = output.work_of(out) / output.EVENTS
    stop_event = stop_event or threading.Event()
    leave_event = leave_event or threading.Event()
    while True:  # the run owns the folder: its owner record names it and its events file is there
        if leave_event.is_set():
            return None
        owner = output.read_owner(out)
        if owner is not None and (launch is None or owner.pid == launch.pid) and events.is_file():
            break  # (a run that has ended is replayed, then said to have ended)
        if launch is not None and launch.proc.poll() is not None:
            failed = _last_failure(launch.log)
            if failed is not None:  # refused before it owned a folder (settings, hardware, a live run there)
                on_event(failed)  # with its problems, line by line
                raise TrainerError(failed.message, hint=failed.hint)
            raise TrainerError(f"the run's process ended with exit code {launch.proc.returncode} before it started",
                               hint=f"its output ({launch.log}):\n{_tail(launch.log)}")
        if launch is None and not events.is_file():
            raise InputError(f"no run is going in {out}", hint="see `genaptitude-trainer runs`")
        time.sleep(poll)

    try:
        fh = open(events, "rb")  # kept open: the folder is renamed into place at the end, the file stays ours
    except FileNotFoundError:  # a run refused before it trained took its folder away just now (output.leave)
        return follow(output_dir, on_event, stop_event=stop_event, leave_event=leave_event, launch=launch,
                      replay=replay, poll=poll)  # (its launch log, or its absence, says why)
    finished: Finished | None = None
    signalled = False
    next_check = 0.0
    with fh:
        pending = b""
        if not replay:  # from now on (whole lines: a line being written is read when it is whole)
            pending = fh.read().rpartition(b"\n")[2]
        while True:
            chunk = fh.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    event = event_of(line)
                    if event is None:
                        continue  # not an event of ours
                    on_event(event)
                    if isinstance(event, Finished):
                        finished = event
                    elif isinstance(event, Failed):
                        raise TrainerError(event.message, hint=event.hint)
                if finished is not None:
                    return finished
                continue
            if leave_event.is_set():
                return None
            if stop_event.is_set() and not signalled:
                signalled = True
                if launch is not None:
                    launch.proc.send_signal(signal.SIGINT)
                else:
                    try:
                        stop_run(out)
                    except InputError:
                        pass  # it ended meanwhile: the next look says how
            now = time.monotonic()
            if now >= next_check:  # the lock, not the pid: a pid can be reused, a lock dies with its process
                next_check = now + 1.0
                alive = launch.proc.poll() is None if launch is not None else output.lock_held(out)
                if not alive:
                    rest = fh.read()
                    if rest:
                        fh.seek(-len(rest), os.SEEK_CUR)
                        continue  # the last events came in as it ended: read them first
                    log = output.work_of(out) / output.LOG
                    tail = _tail(log) if log.is_file() else (_tail(launch.log) if launch else "")
                    raise TrainerError(f"the run's process ({owner.describe()}) ended without finishing",
                                       hint="resume it from its last checkpoint: t then r in the app, or "
                                            f"genaptitude-trainer train --resume --output {out} ..."
                                            + (f"\nits last output:\n{tail}" if tail else ""))
            time.sleep(poll)
