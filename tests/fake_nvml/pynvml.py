"""A stand-in for nvidia-ml-py's `pynvml` with the GPUs a test describes, for machines without a GPU.

In-process tests pass `FakeNvml(gpus)` to `core.hardware`; subprocess tests put this folder first on PYTHONPATH and
describe the GPUs in FAKE_NVML_GPUS (JSON: [{"name", "total_gib", "used_gib", "cc", "uuid", "processes":
[[pid, gib]]}]). With FAKE_NVML_LOG set, nvmlInit appends whether torch was already imported (CUDA_VISIBLE_DEVICES
only works if it is set before torch starts CUDA).
"""
from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

GIB = 1024 ** 3
NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError

    def __init__(self, gpus: list[dict]) -> None:
        self.gpus = gpus

    def nvmlInit(self) -> None:
        log = os.environ.get("FAKE_NVML_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(f"nvmlInit torch_imported={'torch' in sys.modules}\n")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.95.05"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict:
        if not 0 <= i < len(self.gpus):
            raise NVMLError("Invalid Argument")  # (what NVML answers for an index it does not have)
        self.gpus[i]["handles"] = self.gpus[i].get("handles", 0) + 1
        return self.gpus[i]

    def nvmlDeviceGetMemoryInfo(self, g: dict):
        if g.get("lost"):  # a GPU fallen off the bus answers every query with an error
            raise NVMLError("GPU is lost")
        total, used = int(g["total_gib"] * GIB), int(g["used_gib"] * GIB)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetName(self, g: dict) -> str:
        return g.get("name", "NVIDIA H200")

    def nvmlDeviceGetCudaComputeCapability(self, g: dict):
        return tuple(g.get("cc", (9, 0)))

    def nvmlDeviceGetUUID(self, g: dict) -> str:
        return g.get("uuid", f"GPU-{self.gpus.index(g):08x}-0000-0000-0000-000000000000")

    def nvmlDeviceGetComputeRunningProcesses(self, g: dict):
        return [SimpleNamespace(pid=pid, usedGpuMemory=None if gib is None else int(gib * GIB))
                for pid, gib in g.get("processes", [])]

    def nvmlDeviceGetUtilizationRates(self, g: dict):
        return SimpleNamespace(gpu=0, memory=0)

    def nvmlDeviceGetTemperature(self, g: dict, sensor: int) -> int:
        return 35


_fake = FakeNvml(json.loads(os.environ.get("FAKE_NVML_GPUS", "[]")))
for _name in dir(_fake):
    if _name.startswith("nvml"):
        globals()[_name] = getattr(_fake, _name)
