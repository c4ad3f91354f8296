"""The run folder's one owner: where a run works, who holds it, what it can resume, and how files are written.

Layout of a finished run (what GenAptitude's RAISE_LORA_PATH points at):
    <output>/adapter_config.json, adapter_model.safetensors, tokenizer files,
    <output>/run.json (resolved config, dataset hash, versions, final metrics), metrics.jsonl,
    <output>/events.jsonl (the last session's events), train.log (a detached run's output),
    <output>/checkpoints/checkpoint-N/ (only when the run was stopped early, for --resume).
While it runs, all of it is in `<output>.partial/` (renamed into place at the end, so nothing is half-written).

Beside the folder, a run holds `.<output>.lock` (a `filelock` lock, for the run's whole life) and writes
`.<output>.owner.json` (pid, host, start time). They stay beside the folder, never in it: emptying the work folder
or renaming it into place must not move the lock of the run that is doing it. A lock nobody holds means no run is
going, whatever the owner record says (a run killed with -9 drops its lock with its process).

Every question about a run folder is answered here: is this an adapter (`is_adapter`), can it resume
(`resume_point`, also what the TUI offers), what is in it (`existing`), its run.json (`read_run_json`, one error
policy), writing a file or a folder into place (`write_atomic`, `atomic_path`, `swap_into_place`), and the lock
(`prepare` takes it, `inspect` reads it, `leave` lets it go, and takes away all a run refused before it trained had
made). What a run says while it holds the folder (events.jsonl, train.log) is
written by core/runs/journal.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from core.errors import InputError, TrainerError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
DEFAULT_OUTPUT = "genaptitude-qwen-adapter"  # the old train.py's folder: GenAptitude's RAISE_LORA_PATH docs name it
PARTIAL = ".partial"
EVENTS = "events.jsonl"  # the engine's events of the current session, one JSON object a line
METRICS = "metrics.jsonl"
RUN_JSON = "run.json"
LOG = "train.log"  # stdout and stderr of a detached run (the TUI's), once it owns the folder
TAKE_LOCK_S = 2.0  # a run waits this long for the lock: a reader's quick look (`inspect`) holds it for microseconds


@dataclass
class RunDirs:
    output: Path  # final place
    work: Path  # <output>.partial while running
    resume_from: Path | None  # checkpoint folder to resume from
    lock: "RunLock | None" = None  # held by the process that prepared the folders (None in data-parallel workers)
    # What `prepare` made where nothing of this output was (lock, owner record, work folder, and the outermost
    # folder of the path it created), for `leave` to take away after a refusal; None: something was there before.
    made: "Made | None" = None

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.work / METRICS

    @property
    def events(self) -> Path:
        return self.work / EVENTS


# -- names -------------------------------------------------------------------------------------------------
def is_work(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a run's `.partial` work folder (where it writes until it finishes)."""
    return Path(folder).name.endswith(PARTIAL)


def _beside(path: Path) -> Path:
    """The work folder next to an output folder, as the path was given (not resolved)."""
    return path.with_name(path.name + PARTIAL)


def output_of(folder: str | os.PathLike) -> Path:
    """The final output folder of a run given either it or its `.partial` work folder."""
    path = Path(folder).expanduser().resolve()
    return path.with_name(path.name[:-len(PARTIAL)]) if is_work(path) else path


def work_of(output: str | os.PathLike) -> Path:
    return _beside(output_of(output))


def run_folder(folder: str | os.PathLike) -> Path:
    """The folder a user means by `folder`: itself, or its `.partial` while a run is going in it (or was killed
    before its first finish, leaving no `folder`)."""
    path = Path(folder).expanduser()
    partial = _beside(path)
    if not is_work(path) and partial.is_dir() and (not path.exists() or lock_held(path)):
        return partial
    return path


def lock_path(output: str | os.PathLike) -> Path:
    out = output_of(output)
    return out.with_name(f".{out.name}.lock")


def owner_path(output: str | os.PathLike) -> Path:
    out = output_of(output)
    return out.with_name(f".{out.name}.owner.json")


# -- what a folder holds -----------------------------------------------------------------------------------
def checkpoint_step(path: Path) -> int:
    """The optimizer step of a `checkpoint-N` folder."""
    m = re.fullmatch(r"checkpoint-(\d+)", Path(path).name)
    if not m:
        raise ValueError(f"{path} is not a checkpoint-N folder")
    return int(m.group(1))


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (one with its trainer_state.json) in `folder`."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def resume_point(output: str | os.PathLike) -> Path | None:
    """The checkpoint `train --resume` continues from: the unfinished run's, else a stopped run's. The one rule."""
    out = output_of(output)
    return latest_checkpoint(work_of(out) / "checkpoints") or latest_checkpoint(out / "checkpoints")


def is_adapter(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a LoRA adapter (ADAPTER_FILES): the rule adapter_folder and the TUI ask."""
    return all((Path(folder) / f).is_file() for f in ADAPTER_FILES)


def adapter_folder(folder: str | os.PathLike) -> Path:
    """`folder` resolved, or the one sentence (InputError) every command that reads an adapter (evaluate, export,
    merge, export --gguf) says when it holds none."""
    path = Path(folder).expanduser().resolve()
    if not is_adapter(path):
        raise InputError(f"{path} is not an adapter folder (needs {' and '.join(ADAPTER_FILES)})",
                         hint="give the --output folder of a finished `genaptitude-trainer train`")
    return path


def existing(output: str | os.PathLike) -> tuple[str, bool] | None:
    """What is already at `output` (in words) and whether it can be resumed; None if nothing is there."""
    out = Path(output).expanduser()
    partial = _beside(out)
    resumable = resume_point(out) is not None
    if partial.exists():
        return f"an unfinished run is in {partial}", resumable
    if out.is_dir() and any(out.iterdir()):
        return f"{out} already holds {'an adapter' if is_adapter(out) else 'files'}", resumable
    return None


def read_run_json(folder: str | os.PathLike, *, required: bool = False) -> dict:
    """A run's record ({} when there is none and it is not `required`). A file that cannot be read, is not JSON,
    or is not an object is refused the same way for every reader: one sentence, InputError (exit 2)."""
    path = Path(folder) / RUN_JSON
    if not path.is_file():
        if required:
            raise InputError(f"{path} is missing", hint="give the --output folder of a finished run")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read: {exc}", hint="check the file's permissions") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                         hint="the run's record is damaged; restore it, or delete run.json to treat the folder "
                              "as a bare adapter") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds a JSON {type(data).__name__}, not the run's record (an object)",
                         hint="the run's record is damaged; restore it, or delete run.json") from None
    for key in ("config", "dataset", "final"):
        if key in data and not isinstance(data[key], dict):
            raise InputError(f"{path}: its {key!r} entry is a {type(data[key]).__name__}, not an object",
                             hint="the run's record is damaged; restore it, or delete run.json")
    return data


def metrics_rows(path: Path) -> Iterator[dict]:
    """The JSON objects of a run's metrics.jsonl (or events.jsonl), in order; a line cut by kill -9 (or anything
    not an object) is skipped, a missing or unreadable file gives none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            yield row


def trim_metrics(path: Path, last_step: int) -> None:
    """After a crash, drop metric lines logged after the checkpoint we resume from."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by kill -9
    write_atomic(path, "".join(l + "\n" for l in keep))


# -- writing into place ------------------------------------------------------------------------------------
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed onto `path` when the block ends, removed if it fails."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def swap_into_place(src: Path, dest: Path) -> Path:
    """Rename the folder `src` to `dest`; an older `dest` is kept aside until the new one is there."""
    old = None
    if dest.exists():
        old = dest.with_name(f"{dest.name}.old-{int(time.time())}")
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def finalize(dirs: RunDirs) -> Path:
    """Move the work folder into place; an older output is kept until the new one is there."""
    if not is_adapter(dirs.work):
        raise TrainerError(f"the run did not produce an adapter in {dirs.work}")
    return swap_into_place(dirs.work, dirs.output)


# -- a refused run leaves nothing ------------------------------------------------------------------------------
@dataclass
class Made:
    """What a run's `prepare` created where nothing of its output was before."""

    parents: Path | None  # the outermost folder above the output it created (None: they all existed)


def _outermost_missing(folder: Path) -> Path | None:
    missing = None
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing = p
    return missing


def trained_nothing(work: Path) -> bool:
    """Whether the work folder holds only what a run says before it trains: its events and (detached) its log. A
    step logged (metrics.jsonl), a checkpoint, an adapter or a run.json is something to keep."""
    try:
        return {p.name for p in work.iterdir()} <= {EVENTS, LOG}
    except OSError:
        return False


def leave(dirs: RunDirs, *, refused: bool) -> None:
    """Release the run's lock. A run `refused` (bad data or settings, a model not found, no room) in a folder it
    made, before it trained anything, first takes away all it made: the work folder, the owner record, the lock
    file (unlinked while held: a waiter that gets the old file sees it unlinked and retries, filelock checks) and
    the folders of the path it created. The user's folder is left as it was, and `runs` lists no unfinished run."""
    made, lock = dirs.made, dirs.lock
    try:
        if refused and made is not None and lock is not None and trained_nothing(dirs.work):
            shutil.rmtree(dirs.work, ignore_errors=True)
            owner_path(dirs.output).unlink(missing_ok=True)
            lock_path(dirs.output).unlink(missing_ok=True)
            if made.parents is not None:
                folder = dirs.output.parent
                while True:  # only the folders it created, and only when empty
                    try:
                        folder.rmdir()
                    except OSError:
                        break
                    if folder == made.parents:
                        break
                    folder = folder.parent
    finally:
        if lock is not None:
            lock.release()


# -- the lock ------------------------------------------------------------------------------------------------
@dataclass
class Owner:
    """Who holds (or last held) a run folder."""

    pid: int
    host: str
    started_at: str  # ISO time, local zone
    live: bool = False  # the lock is held now (set by `inspect`)

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{where}, started {self.started_at.replace('T', ' ')[:19]}"


def read_owner(output: str | os.PathLike) -> Owner | None:
    try:
        data = json.loads(owner_path(output).read_text(encoding="utf-8"))
        return Owner(int(data["pid"]), str(data["host"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lock_held(output: str | os.PathLike) -> bool:
    """Whether a live process holds the run folder's lock (a quick try of the lock, released at once)."""
    from filelock import FileLock, Timeout

    path = lock_path(output)
    if not path.is_file():
        return False
    probe = FileLock(str(path), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    probe.release()
    return False


def inspect(output: str | os.PathLike) -> Owner | None:
    """The folder's owner record with `live` set (None when no run ever claimed it)."""
    owner = read_owner(output)
    held = lock_held(output)
    if owner is None:
        return Owner(0, "?", "?", live=True) if held else None
    owner.live = held
    return owner


def how_it_ended(output: str | os.PathLike) -> str:
    """How the last run of `output` ended, from its events, for the next run's take-over line: "was stopped while
    downloading …" after a Ctrl-C, "failed: …" after an error, else "is no longer running" (killed, or its terminal
    closed: it wrote no last word)."""
    last = None
    for row in metrics_rows(work_of(output) / EVENTS):
        last = row
    if last and last.get("event") == "failed" and last.get("message"):
        message = str(last["message"])
        return f"was {message}" if message.startswith("stopped") else f"failed: {message}"
    return "is no longer running"


class RunLock:
    """The lock a run holds for its whole life, so no second run can write into (or wipe) its folder."""

    def __init__(self, output: str | os.PathLike) -> None:
        from filelock import FileLock

        self.output = output_of(output)
        self._lock = FileLock(str(lock_path(self.output)), timeout=TAKE_LOCK_S)
        self.owner: Owner | None = None

    def acquire(self, say: Callable[[str], None] = lambda line: None) -> "RunLock":
        from filelock import Timeout

        self.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            owner = read_owner(self.output)
            who = owner.describe() if owner else "a process that is starting up"
            raise InputError(f"{self.output} belongs to a run that is still going ({who})",
                             hint=f"watch it: genaptitude-trainer attach {self.output} · stop it: genaptitude-trainer "
                                  f"stop {self.output} · or train into another --output") from None
        before = read_owner(self.output)
        if before is not None and work_of(self.output).exists():
            say(f"taking over {work_of(self.output)}: its run ({before.describe()}) {how_it_ended(self.output)}")
        return self

    def claim(self) -> Owner:
        """Record this process as the owner (after the folder is prepared: a reader that sees it finds this
        run's files, never the last run's)."""
        self.owner = Owner(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), live=True)
        record = {k: v for k, v in asdict(self.owner).items() if k != "live"}
        write_atomic(owner_path(self.output), json.dumps(record) + "\n")
        return self.owner

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()


def prepare(output: str | os.PathLike, *, overwrite: bool, resume: bool,
            say: Callable[[str], None] = lambda line: None) -> RunDirs:
    """Take the folder's lock, then decide where this run works and what it resumes from; refuse to clobber
    anything unasked. A folder a live run holds is refused (InputError naming its pid), never emptied."""
    out = Path(output).expanduser().resolve()
    work = work_of(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a folder", hint="choose another --output")
    fresh = not any(p.exists() for p in (out, work, lock_path(out), owner_path(out)))
    made = Made(_outermost_missing(out.parent)) if fresh else None
    lock = RunLock(out).acquire(say)
    try:
        dirs = _decide(out, work, overwrite=overwrite, resume=resume)
        work.mkdir(parents=True, exist_ok=True)
        (work / EVENTS).unlink(missing_ok=True)  # the last session's events: this run writes its own
        lock.claim()
    except BaseException:
        lock.release()
        raise
    dirs.lock, dirs.made = lock, made
    return dirs


def _decide(out: Path, work: Path, *, overwrite: bool, resume: bool) -> RunDirs:
    if resume:
        ckpt = latest_checkpoint(work / "checkpoints")
        if ckpt is None and latest_checkpoint(out / "checkpoints"):
            # A run stopped with the stop key was finalised: continue in a fresh work copy of it.
            if work.exists():
                shutil.rmtree(work)
            shutil.copytree(out, work)
            ckpt = latest_checkpoint(work / "checkpoints")
        if ckpt is None:
            raise InputError(f"nothing to resume: no checkpoint in {work / 'checkpoints'} or {out / 'checkpoints'}",
                             hint="start a new run without --resume (add --save-every N to checkpoint periodically)")
        return RunDirs(out, work, ckpt)
    if work.exists():
        if not overwrite and latest_checkpoint(work / "checkpoints"):
            raise InputError(f"an unfinished run is in {work}",
                             hint="pass --resume to continue it, or --overwrite to start over")
        shutil.rmtree(work)
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "an adapter" if is_adapter(out) else "files"
        raise InputError(f"{out} already holds {what}; it is never overwritten silently",
                         hint="pass --overwrite to replace it, or choose another --output")
    return RunDirs(out, work, None)
