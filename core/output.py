"""The run's folders: work in `<output>.partial`, then rename into place, so nothing is ever half-written.

Layout of a finished run (what GenAptitude's RAISE_LORA_PATH points at):
    <output>/adapter_config.json, adapter_model.safetensors, tokenizer files,
    <output>/run.json (resolved config, dataset hash, versions, final metrics), metrics.jsonl,
    <output>/checkpoints/checkpoint-N/ (only when the run was stopped early, for --resume).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, TrainerError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class RunDirs:
    output: Path  # final place
    work: Path  # <output>.partial while running
    resume_from: Path | None  # checkpoint folder to resume from

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.work / "metrics.jsonl"


def latest_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def is_adapter(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ADAPTER_FILES)


def prepare(output: str | os.PathLike, *, overwrite: bool, resume: bool) -> RunDirs:
    """Decide where this run works and what it resumes from; refuse to clobber anything unasked."""
    out = Path(output).expanduser().resolve()
    work = out.with_name(out.name + ".partial")
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a folder", hint="choose another --output")
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


def metrics_rows(path: Path):
    """The JSON objects of a run's metrics.jsonl, in order; a line cut by kill -9 (or anything not an object) is
    skipped, a missing or unreadable file gives none. Shared by `report` and the run history."""
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


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def finalize(dirs: RunDirs) -> Path:
    """Move the work folder into place; an older output is kept until the new one is there."""
    if not is_adapter(dirs.work):
        raise TrainerError(f"the run did not produce an adapter in {dirs.work}")
    old = None
    if dirs.output.exists():
        old = dirs.output.with_name(f"{dirs.output.name}.old-{int(time.time())}")
        os.replace(dirs.output, old)
    try:
        os.replace(dirs.work, dirs.output)
    except OSError:
        if old is not None:
            os.replace(old, dirs.output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dirs.output
