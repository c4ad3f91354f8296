"""One memory reading: torch allocator (CUDA), NVML device usage and the process RSS."""
from __future__ import annotations

import os

from core.estimate import usable_gib_of
from core.gpus import nvml_index
from core.hardware import GIB, nvml_used_gib

# Set by a data-parallel launch for its workers: the memory quantization "auto" decides on, read once by the launcher
# (the least any of the run's GPUs has), so every worker loads the same base.
USABLE_ENV = "GENAPTITUDE_TRAINER_USABLE_GIB"


def process_rss_gib() -> float | None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / GIB
    except (OSError, ValueError, IndexError):
        return None


def memory_sample(device: str, gpus: int = 1) -> dict:
    """This process's memory now; with `gpus` > 1 (rank 0 of a data-parallel run) NVML's reading of each GPU."""
    alloc = reserved = peak = None
    if device == "cuda":
        import torch

        alloc = torch.cuda.memory_allocated() / GIB
        reserved = torch.cuda.memory_reserved() / GIB
        peak = torch.cuda.max_memory_allocated() / GIB
    # NVML numbers GPUs its own way: cuda:0 of a run pinned to GPU 1 is NVML's GPU 1 (core/gpus.py)
    used, total = nvml_used_gib(nvml_index(0)) if device == "cuda" else (None, None)
    return {
        "torch_allocated_gib": alloc,
        "torch_reserved_gib": reserved,
        "torch_peak_gib": peak,
        "nvml_used_gib": used,
        "nvml_total_gib": total,
        "process_rss_gib": process_rss_gib(),
        "gpus_used_gib": ([nvml_used_gib(nvml_index(i))[0] for i in range(gpus)]
                          if device == "cuda" and gpus > 1 else None),
        "gpu_ids": [nvml_index(i) for i in range(gpus)] if device == "cuda" else None,
    }


def usable_gib(config, device: int | None = None) -> float | None:
    """What this process may hold in all, now (what it holds included): on a GPU (`device`, default the current one)
    the smaller of its gpu_memory_fraction cap and free + this process's reserved memory; on the CPU the RAM
    available plus this process's. None when it cannot tell."""
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device)  # what this process holds is its own to use
        return usable_gib_of(config, [(free / GIB, total / GIB)])
    try:
        with open("/proc/meminfo") as fh:
            available = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return available * 1024 / GIB + (process_rss_gib() or 0.0)


def nvml_usable_gib(config, ordinals, environ=None) -> float | None:
    """The least memory any of CUDA devices `ordinals` leaves a run (core.estimate.usable_gib_of), read through NVML
    (no CUDA context is made). None when NVML cannot tell."""
    readings = []
    for ordinal in ordinals:
        used, total = nvml_used_gib(nvml_index(ordinal, environ))
        if used is None or total is None:
            return None
        readings.append((total - used, total))
    return usable_gib_of(config, readings)


def usable_before_load(config, device: int) -> float | None:
    """The memory quantization "auto" decides on, just before the base loads: a data-parallel launch's reading
    (the same for all its workers), else this process's on GPU `device` (usable_gib)."""
    raw = os.environ.get(USABLE_ENV)
    if raw:
        try:
            return float(raw)
        except ValueError:
            pass
    return usable_gib(config, device)
