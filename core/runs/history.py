"""Past runs: where they are, and what each one's folder says (record, numbers, loss and memory curves).

A run leaves `run.json` and `metrics.jsonl` in its output folder (see `core/runs/output.py`); an unfinished one leaves
`metrics.jsonl` (and checkpoints) in `<output>.partial`. Runs are found next to the current output folder, in the
working directory, and through a small index the engine appends to when a run starts:
`$GENAPTITUDE_TRAINER_HOME/runs.jsonl`, else `$XDG_STATE_HOME` (or `~/.local/state`)`/genaptitude-trainer/runs.jsonl`.

A run that is going holds its folder's lock (core/runs/output.py): its record says "running" and who runs it. An
unfinished folder whose lock nobody holds is a run whose process ended without finishing (killed, crashed).

Listing never raises for a bad folder: an unreadable `run.json` gives a record that says so (the sentence
`output.read_run_json` gives every reader). `load_one`, for one run named by the user, raises it. No torch here.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from core.errors import InputError
from core.runs import output
from core.runs.output import latest_checkpoint, metrics_rows

INDEX_NAME = "runs.jsonl"
_OLD = re.compile(r"\.old-\d+$")  # finalize()'s short-lived backup of a replaced output
MAX_SCAN = 5000  # entries looked at per folder: a huge home folder must not stall the list


def state_home() -> Path:
    home = os.environ.get("GENAPTITUDE_TRAINER_HOME")
    if home:
        return Path(home).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "genaptitude-trainer"


def index_path() -> Path:
    return state_home() / INDEX_NAME


def remember_run(output: str | os.PathLike, preset: str = "", model: str = "", dataset: str = "",
                 index: Path | None = None) -> None:
    """Append a started run to the index. Never raises: an unwritable home must not fail a run."""
    try:
        index = index or index_path()
        entry = {"path": str(Path(output).expanduser().resolve()), "preset": preset, "model": model,
                 "dataset": str(dataset), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        index.parent.mkdir(parents=True, exist_ok=True)
        with open(index, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    except OSError:  # an unwritable home: the index is a convenience, never a reason to stop training
        pass


def read_index(index: Path) -> dict[Path, dict]:
    """Output folder → its latest index entry; a missing index or a corrupt line is skipped."""
    entries: dict[Path, dict] = {}
    try:
        lines = index.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return entries
    for line in lines:
        try:
            entry = json.loads(line)
            path = Path(entry["path"])
        except (ValueError, KeyError, TypeError):
            continue
        entries.pop(path, None)
        entries[path] = entry  # the latest start wins (and moves to the end)
    return entries


# -- one run -------------------------------------------------------------------------------------------------
class MemoryPoint(NamedTuple):
    step: int
    allocated: float | None  # torch allocator (CUDA)
    peak: float | None  # torch max allocated so far
    nvml_used: float | None  # whole GPU, as nvidia-smi shows it
    rss: float | None  # this process's RAM


ENDED_EARLY = ("unfinished", "stopped", "diverged")  # the states a run may be resumed from (RunRecord.resumable)


@dataclass
class RunRecord:
    path: Path
    state: str  # "finished", "stopped", "running" (a `.partial` folder whose run holds its lock), "unfinished" (a
    # `.partial` folder nobody holds: its process ended without finishing), "diverged" (its run.json says so:
    # core/train/divergence.py; in `.partial` when it stopped for NaN weights) or "unreadable" (bad run.json)
    preset: str = ""
    model: str = ""
    dataset: str = ""
    started: datetime | None = None  # when the (last) training session started, local time
    steps: int = 0
    total_steps: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None  # the last logged rate (tokens per second over the last logging window)
    runtime_s: float | None = None
    checkpoint: Path | None = None  # resumable checkpoint, when there is one
    error: str = ""  # why run.json could not be read
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    memory: list[MemoryPoint] = field(default_factory=list)
    owner: output.Owner | None = None  # who runs (or last ran) it: pid, host, start

    @property
    def output(self) -> Path:
        """The run's final folder (what `train --output` was given)."""
        return output.output_of(self.path)

    @property
    def resumable(self) -> bool:
        """Whether `train --resume --output <its output>` continues this run: the one answer `runs` and the TUI's
        history (its r key, its "resumable:" line) give. It ended early (unfinished, stopped, diverged) and its
        checkpoint is the one a resume takes (core.runs.output.resume_point, the rule): a running or finished
        run's checkpoint is not a resume point."""
        if self.state not in ENDED_EARLY or self.checkpoint is None:
            return False
        point = output.resume_point(self.output)
        return point is not None and point.resolve() == self.checkpoint.resolve()

    @property
    def memory_label(self) -> str:
        return "torch allocated" if any(m.allocated is not None for m in self.memory) else "process RAM"

    @property
    def memory_curve(self) -> list[tuple[int, float]]:
        """Torch allocated memory (GPU runs), else the process RAM (CPU runs), in GiB against the step."""
        if any(m.allocated is not None for m in self.memory):
            return [(m.step, m.allocated) for m in self.memory if m.allocated is not None]
        return [(m.step, m.rss) for m in self.memory if m.rss is not None]

    @property
    def nvml_curve(self) -> list[tuple[int, float]]:
        return [(m.step, m.nvml_used) for m in self.memory if m.nvml_used is not None]

    @property
    def peak_gib(self) -> float | None:
        """The torch peak (GPU runs), else the most process RAM seen."""
        peaks = [m.peak for m in self.memory if m.peak is not None]
        if peaks:
            return max(peaks)
        ram = [v for _, v in self.memory_curve]
        return max(ram) if ram else None


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _read_metrics(path: Path, record: RunRecord) -> dict | None:
    """Fill the curves from metrics.jsonl; returns the last step line (None without one)."""
    last = None
    for row in metrics_rows(path):
        try:
            kind, step = row.get("event"), int(row.get("step", 0))
            if kind == "step":
                record.train_curve.append((step, float(row["loss"])))
                last = row
            elif kind == "eval":
                record.eval_curve.append((step, float(row["eval_loss"])))
            elif kind == "memory":
                record.memory.append(MemoryPoint(step, _float(row.get("torch_allocated_gib")),
                                                 _float(row.get("torch_peak_gib")),
                                                 _float(row.get("nvml_used_gib")),
                                                 _float(row.get("process_rss_gib"))))
        except (ValueError, KeyError, TypeError):
            continue  # a line that is not ours
    return last


def _parse_time(text) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when.astimezone()  # to local time (a naive time is taken as local already)


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    except OSError:
        return None


def load_run(path: Path, meta: dict | None = None) -> RunRecord:
    """Read one run folder. `meta` is its index entry (preset, model, dataset, started_at), if any."""
    path = Path(path)
    meta = meta or {}
    partial = output.is_work(path)
    record = RunRecord(path=path, state="unfinished" if partial else "finished", preset=meta.get("preset", ""),
                       model=meta.get("model", ""), dataset=meta.get("dataset", ""))
    info: dict = {}
    try:
        info = output.read_run_json(path, required=not partial)
    except InputError as exc:
        record.error = exc.message
    if partial:
        record.owner = output.inspect(path)
        if record.owner is not None and record.owner.live:
            record.state = "running"
        elif info.get("status") == "diverged":  # stopped for NaN weights, no adapter: its checkpoints stay
            record.state = "diverged"
    if record.error and not partial:
        record.state = "unreadable"

    last = _read_metrics(path / "metrics.jsonl", record)
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    record.preset = str(config.get("preset") or record.preset)
    record.model = str(config.get("model") or info.get("model_path") or record.model)
    dataset = info.get("dataset") if isinstance(info.get("dataset"), dict) else {}
    record.dataset = str(dataset.get("path") or record.dataset)
    record.tokens_per_s = _float(last.get("tokens_per_s")) if last else None
    record.checkpoint = latest_checkpoint(path / "checkpoints")

    if info and not partial:  # the record of a run that ended (finished, or stopped with the stop key)
        final = info.get("final") if isinstance(info.get("final"), dict) else {}
        record.state = ("diverged" if info.get("status") == "diverged" else
                        "stopped" if info.get("stopped_early") else "finished")
        record.steps = int(_float(info.get("steps")) or 0)
        record.total_steps = int(_float(info.get("total_steps")) or 0)
        record.train_loss, record.eval_loss = _float(final.get("train_loss")), _float(final.get("eval_loss"))
        record.runtime_s = _float(final.get("runtime_s"))
        ended = _parse_time(info.get("finished_at"))
        record.started = ended - timedelta(seconds=record.runtime_s or 0) if ended else None
    else:  # still running, crashed, or unreadable: the metrics say how far it got
        if last is not None:
            record.steps, record.total_steps = int(last.get("step", 0)), int(last.get("total_steps", 0))
            record.runtime_s = _float(last.get("elapsed_s"))
        record.train_loss = record.train_curve[-1][1] if record.train_curve else None
        record.eval_loss = record.eval_curve[-1][1] if record.eval_curve else None
        record.started = _parse_time(meta["started_at"]) if meta.get("started_at") else None
        if record.started is None:
            touched = _mtime(path / "metrics.jsonl") or _mtime(path)
            record.started = touched - timedelta(seconds=record.runtime_s or 0) if touched else None
    return record


# -- finding runs ---------------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    """A finished/stopped output (run.json) or an unfinished work folder (`.partial` with metrics or checkpoints)."""
    try:
        if not path.is_dir() or _OLD.search(path.name):
            return False
        if (path / "run.json").is_file():
            return True
        if not output.is_work(path):
            return False
        if (path / "metrics.jsonl").is_file() or (path / "checkpoints").is_dir():
            return True
        return (path / output.EVENTS).is_file() and output.lock_held(path)  # going, not at its first step yet
    except OSError:
        return False


NAME_A_RUN = "give a run's --output folder (or its .partial while it runs); `genaptitude-trainer runs` lists them"


def named_run_dir(folder: str | os.PathLike) -> Path:
    """The run folder a user named (its output folder, or its `.partial` while a run goes in it or when only that
    is left: core.runs.output.run_folder), resolved; or InputError saying why it is not one (is_run_dir is the
    rule). What `runs RUN`, `attach` and `report` ask."""
    path = output.run_folder(folder)
    if not path.exists():
        raise InputError(f"{path}: no such folder", hint=NAME_A_RUN)
    if not path.is_dir():
        raise InputError(f"{path} is a file, not a run folder", hint=NAME_A_RUN)
    if not is_run_dir(path):
        raise InputError(f"{path} is not a training run (no run.json, metrics or events in it)", hint=NAME_A_RUN)
    return path.resolve()


def load_one(folder: str | os.PathLike) -> RunRecord:
    """The run a user named (named_run_dir), or InputError saying why it is not one; a damaged run.json is refused
    with the same sentence as everywhere else."""
    path = named_run_dir(folder)
    output.read_run_json(path)  # raises the one sentence for a damaged record
    out = output.output_of(path)
    return load_run(path.resolve(), read_index(index_path()).get(out))


def _children(folder: Path) -> Iterable[Path]:
    try:
        with os.scandir(folder) as it:
            for i, entry in enumerate(it):
                if i >= MAX_SCAN:
                    return
                if entry.is_dir():
                    yield Path(entry.path)
    except OSError:
        return


@dataclass
class History:
    runs: list[RunRecord]
    folders: list[Path]  # searched, with their sub-folders
    index: Path

    def where(self) -> str:
        """Where the runs were looked for, in words."""
        places = ", ".join(display_path(f).rstrip("/") + "/" for f in self.folders)
        return f"{places} and the index {display_path(self.index)}"


def find_runs(output_dir: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None,
              index: Path | None = None, cancelled: Callable[[], bool] | None = None,
              live_only: bool = False) -> History:
    """Every run found next to `output_dir`, in `cwd` and through the index, one per folder: the runs going now
    first, then newest first. `live_only`: only the runs going now (the app's start-up question), found by their
    locks without reading the others' metrics."""
    index = index or index_path()
    folders: list[Path] = []
    for base in ((Path(output_dir).expanduser().resolve().parent if output_dir is not None else None),
                 Path(cwd if cwd is not None else os.getcwd()).expanduser().resolve()):
        if base is not None and base not in folders:
            folders.append(base)
    meta = read_index(index)
    candidates: list[Path] = []
    for folder in folders:
        candidates += [folder, *_children(folder)]
    for out in reversed(list(meta)):  # newest first; a vanished folder is just not there any more
        candidates += [out, output.work_of(out)]

    seen: set[Path] = set()
    runs: list[RunRecord] = []
    for path in candidates:
        if cancelled is not None and cancelled():
            break
        try:
            key = path.resolve()
        except OSError:
            continue
        if key in seen or (live_only and not (output.is_work(key) and output.lock_held(key))):
            continue
        if not is_run_dir(path):
            continue
        seen.add(key)
        runs.append(load_run(key, meta.get(output.output_of(key))))
    runs.sort(key=lambda r: (r.state == "running", r.started.timestamp() if r.started else float("-inf")),
              reverse=True)  # runs going now first, then newest first
    return History(runs, folders, index)


def display_path(path: str | os.PathLike) -> str:
    """Relative to the working directory when inside it, else with ~ for the home folder."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        pass
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)
