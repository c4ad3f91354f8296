"""Data-parallel training on several GPUs: one worker process per GPU, each holding the 4-bit model, joined by
torch.distributed; transformers' Trainer (through accelerate) wraps the model in DDP and shards the batches.

`train --gpus N` runs as a launcher: it validates and prepares the output folder once, then starts N workers
(`core.runs.workers`) with the usual RANK/WORLD_SIZE/MASTER_* variables and the prepared folders. Rank 0 writes the
adapter, the metrics and the events; the launcher forwards them, so the CLI and the TUI see one run.
On CPU the same code runs N processes joined by gloo (how the tests check that 2 processes learn what 1 does).
"""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Callable

from core import startup
from core.events import Event, Failed, LogLine
from core.presets import TrainConfig
from core.runs.output import RunDirs

DIRS_ENV = "GENAPTITUDE_TRAINER_DIRS"  # the launcher's prepared folders, for its workers
# Rehearse a data-parallel run on ONE GPU: every worker uses cuda:0 and they talk through gloo (NCCL refuses two
# ranks on one device). Slower than one process; it checks the multi-GPU code path where only one GPU is lent.
REHEARSAL_ENV = "GENAPTITUDE_TRAINER_DDP_REHEARSAL"


def rehearsal() -> bool:
    return os.environ.get(REHEARSAL_ENV) == "1"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def is_worker() -> bool:
    """Inside a data-parallel worker (started by `launch` or by torchrun/accelerate)."""
    return world_size() > 1


def shared_dirs() -> RunDirs | None:
    """In a worker: the folders its launcher prepared (None outside a launched run)."""
    raw = os.environ.get(DIRS_ENV)
    if not raw:
        return None
    d = json.loads(raw)
    return RunDirs(Path(d["output"]), Path(d["work"]), Path(d["resume_from"]) if d["resume_from"] else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_envs(n: int, port: str, folders: str, gpu_env: dict[str, str]) -> list[dict[str, str]]:
    """One environment per worker: every worker sees the run's GPUs (CUDA_VISIBLE_DEVICES, as torchrun leaves it,
    so NCCL finds their NVLink peers) and takes cuda:LOCAL_RANK among them: rank 1 of a run on GPUs 1,3 is GPU 3."""
    from core.runs.workers import child_env

    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    return [child_env({**gpu_env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": str(n),
                       "LOCAL_WORLD_SIZE": str(n), "RANK": str(r), "LOCAL_RANK": "0" if rehearsal() else str(r),
                       DIRS_ENV: folders, "OMP_NUM_THREADS": threads, startup.ENV: repr(startup.started_at())})
            for r in range(n)]


def launch(config: TrainConfig, dataset_path: str, dirs: RunDirs, emit: Callable[[Event], None],
           stop_event: threading.Event, *, skip_invalid: bool = False) -> Path:
    """Run `config.gpus` workers on the prepared `dirs`; their rank-0 events go to `emit`. Returns the adapter."""
    from core.runs.workers import run_training

    n = config.gpus
    folders = json.dumps({"output": str(dirs.output), "work": str(dirs.work),
                          "resume_from": str(dirs.resume_from) if dirs.resume_from else None})
    gpu_env: dict[str, str] = {}
    if config.device == "cuda" and not rehearsal():
        from core import gpus

        # The same answer the CLI pinned this process to (choosing again under its own variable changes nothing);
        # asked here too so a caller that did not pin (a library user) still gives its workers only their GPUs.
        from core.train.memory import USABLE_ENV, nvml_usable_gib

        gpu_env = gpus.plan(n, config.gpu_ids).env
        # one reading for all workers, so that every one of them loads the same base (quantization "auto")
        usable = nvml_usable_gib(config, range(n), {**os.environ, **gpu_env})
        if usable is not None:
            gpu_env = {**gpu_env, USABLE_ENV: f"{usable:.3f}"}
    envs = worker_envs(n, str(free_port()), folders, gpu_env)
    where = f"GPUs {gpu_env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in gpu_env else (
        f"{n} GPUs" if config.device == "cuda" else f"{n} CPU processes")
    emit(LogLine(f"data-parallel run on {where}: one worker process each, rank 0 writes the adapter"))

    def forward(event: Event) -> None:
        if not isinstance(event, Failed):  # train() reports the failure itself, once, from the raised error
            emit(event)

    finished = run_training(config, dataset_path, str(dirs.output), envs, forward, stop_event, what="worker",
                            skip_invalid=skip_invalid)
    return Path(finished.output_dir) if finished else dirs.output


def leave_group() -> None:
    """A worker leaves its process group before its process exits. Exiting with gloo's threads still alive can abort
    the process ("terminate called without an active exception", exit -6: seen once in CI, on a 2-worker CPU run
    whose steps had all matched)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def worker_device(device: str) -> str:
    """This worker's torch device for a run on `device` (cuda: its own GPU, cuda:LOCAL_RANK)."""
    return f"cuda:{local_rank()}" if device == "cuda" else "cpu"
