"""What GPU is here, read through NVML (nvidia-ml-py), without importing torch unless asked.

NVML is initialised lazily under a lock; every failure becomes a plain sentence in `nvml_error`
instead of an exception, so a machine without a driver still gets a useful answer.
"""
from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field

GIB = 1024 ** 3
_lock = threading.Lock()
_state: dict = {"ready": False, "error": None}


@dataclass
class GpuProcess:
    """A compute process on a GPU, as NVML lists it (another user's run, a notebook, a server)."""

    pid: int
    used_gib: float | None  # None where the driver does not say (e.g. a process in another container)


@dataclass
class GpuInfo:
    index: int  # NVML's index: PCI bus order, as nvidia-smi numbers the GPUs
    name: str
    total_gib: float
    free_gib: float
    used_gib: float
    compute_capability: tuple[int, int] | None
    bf16: bool  # compute capability ≥ 8.0 (Ampere and newer) has fast bf16
    uuid: str = ""  # "GPU-…": CUDA_VISIBLE_DEVICES may name a GPU by it
    others: list[GpuProcess] = field(default_factory=list)  # compute processes on it other than this one

    @property
    def others_gib(self) -> float:
        """Memory the other processes hold (what NVML says of them; the device's used memory where it says nothing)."""
        known = [p.used_gib for p in self.others if p.used_gib is not None]
        if self.others and len(known) < len(self.others):
            return self.used_gib
        return sum(known)


@dataclass
class GpuSample:
    index: int
    name: str
    used_gib: float
    total_gib: float
    util_percent: int | None
    temperature_c: int | None


@dataclass
class HardwareReport:
    gpus: list[GpuInfo] = field(default_factory=list)
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_error: str | None = None
    torch_cuda: bool | None = None  # None = not checked (the TUI does not import torch to paint)
    torch_version: str | None = None
    bnb_cuda: bool | None = None
    bnb_message: str | None = None
    cpu_amx_bf16: bool = False  # the CPU multiplies bf16 in AMX tiles: the cpu preset trains bf16 (cpu_amx_bf16())

    def to_dict(self) -> dict:
        return asdict(self)


def _nvml():
    """Import and initialise NVML once; return the module or None (reason kept in _state)."""
    with _lock:
        if _state["ready"]:
            return _state["module"]
        if _state["error"]:
            return None
        try:
            import pynvml  # from nvidia-ml-py
        except ImportError:
            _state["error"] = "nvidia-ml-py is not installed, so GPUs cannot be listed (pip install nvidia-ml-py)"
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            name = type(exc).__name__
            if "LibraryNotFound" in name or "not found" in str(exc).lower():
                _state["error"] = ("NVIDIA driver library (libnvidia-ml) not found: no NVIDIA GPU or driver "
                                   "on this machine")
            elif "DriverNotLoaded" in name:
                _state["error"] = "the NVIDIA driver is installed but not loaded (is a GPU attached?)"
            else:
                _state["error"] = f"NVML could not start: {exc}"
            return None
        _state.update(ready=True, module=pynvml)
        return pynvml


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _gpu_info(nv, i: int) -> GpuInfo:
    h = nv.nvmlDeviceGetHandleByIndex(i)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    try:
        cc = tuple(nv.nvmlDeviceGetCudaComputeCapability(h))
    except nv.NVMLError:  # NotSupported on some boards and drivers
        cc = None
    try:
        uuid = _text(nv.nvmlDeviceGetUUID(h))
    except nv.NVMLError:
        uuid = ""
    return GpuInfo(
        index=i,
        name=_text(nv.nvmlDeviceGetName(h)),
        total_gib=mem.total / GIB,
        free_gib=mem.free / GIB,
        used_gib=mem.used / GIB,
        compute_capability=cc,  # type: ignore[arg-type]
        bf16=bool(cc and cc[0] >= 8),
        uuid=uuid,
        others=_processes(nv, h),
    )


def _processes(nv, handle) -> list[GpuProcess]:
    """The compute processes on a GPU other than this one; [] when NVML cannot say."""
    try:
        procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)
    except nv.NVMLError:  # NoPermission in some containers
        return []
    out = []
    for p in procs:
        if p.pid == os.getpid():
            continue
        mem = getattr(p, "usedGpuMemory", None)
        out.append(GpuProcess(int(p.pid), mem / GIB if isinstance(mem, int) and mem >= 0 else None))
    return out


def probe(check_torch: bool = False) -> HardwareReport:
    """List GPUs through NVML. With `check_torch`, also ask torch and bitsandbytes (slow: imports torch)."""
    report = HardwareReport(cpu_amx_bf16=cpu_amx_bf16())
    nv = _nvml()
    if nv is None:
        report.nvml_error = _state["error"]
    else:
        try:
            report.driver_version = _text(nv.nvmlSystemGetDriverVersion())
            v = nv.nvmlSystemGetCudaDriverVersion()
            report.cuda_driver_version = f"{v // 1000}.{(v % 1000) // 10}"
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            report.nvml_error = f"NVML query failed: {exc}"
            count = 0
        unread = []
        for i in range(count):
            try:
                report.gpus.append(_gpu_info(nv, i))
            except nv.NVMLError as exc:  # a GPU fallen off the bus, a MIG device NVML refuses: list the others
                unread.append(f"GPU {i} ({exc})")
        if unread:  # a partial list says so: nvml_error is shown beside the GPUs that were read
            report.nvml_error = f"NVML could not read {', '.join(unread)}; only the GPUs it could read are listed"
        elif not count and report.nvml_error is None:
            report.nvml_error = "the NVIDIA driver is loaded but reports no GPU"
    if check_torch:
        _check_torch(report)
    return report


def _check_torch(report: HardwareReport) -> None:
    try:
        import torch
    except ImportError:
        report.torch_cuda = False
        return
    report.torch_version = torch.__version__
    report.torch_cuda = bool(torch.cuda.is_available())
    report.bnb_cuda, report.bnb_message = bnb_status(report.torch_cuda)


def cpu_amx_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (Intel Xeon 4th generation, Sapphire Rapids, and
    newer), read from /proc/cpuinfo's flags (Linux, WSL); False elsewhere, or where oneDNN is told to stop below AMX
    (ONEDNN_MAX_CPU_ISA). Only AMX pays: a LoRA step of SmolLM2-135M at 2×512 tokens ran 1.5-1.9x faster in bf16
    than in fp32 with AMX, and 1.5x slower with AVX-512 BF16 alone (AMX turned off through ONEDNN_MAX_CPU_ISA,
    benchmarks/results/cpu-bf16-2026-12-01.md)."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    if limit and "AMX" not in limit.upper() and limit.upper() != "ALL":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def bnb_status(torch_cuda: bool) -> tuple[bool, str]:
    """Whether bitsandbytes can run 4-bit layers on CUDA here (the WSL/CPU-only-install trap)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - doctor's question: whatever stops the import (missing libs, CUDA setup) is its answer
        return False, f"bitsandbytes does not import: {exc}"
    if not torch_cuda:
        return False, "bitsandbytes is installed but torch sees no CUDA device, so 4-bit runs only on CPU (slowly)"
    try:
        import torch
        from bitsandbytes.functional import dequantize_4bit, quantize_4bit

        x = torch.randn(64, 64, device="cuda", dtype=torch.float16)
        q, state = quantize_4bit(x, quant_type="nf4")
        dequantize_4bit(q, state)
        return True, "bitsandbytes NF4 works on CUDA"
    except Exception as exc:  # noqa: BLE001 - likewise: any failure of the 4-bit round trip is the answer
        return False, f"bitsandbytes has no working CUDA backend: {exc}"


def sample() -> list[GpuSample]:
    """A fast read for the once-a-second panel refresh; [] when NVML is not available. A GPU NVML cannot read is
    left out (probe() names it)."""
    nv = _nvml()
    if nv is None:
        return []
    try:
        count = nv.nvmlDeviceGetCount()
    except nv.NVMLError:
        return []
    out = []
    for i in range(count):
        try:
            out.append(_sample_one(nv, i))
        except nv.NVMLError:
            continue
    return out


def _sample_one(nv, i: int) -> GpuSample:
    h = nv.nvmlDeviceGetHandleByIndex(i)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    try:
        util = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
    except nv.NVMLError:  # NotSupported on some boards
        util = None
    try:
        temp = int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
    except nv.NVMLError:
        temp = None
    return GpuSample(i, _text(nv.nvmlDeviceGetName(h)), mem.used / GIB, mem.total / GIB, util, temp)


def nvml_used_gib(index: int = 0) -> tuple[float | None, float | None]:
    """(used, total) GiB of one GPU, or (None, None): its memory only. A run reads it at every logged step, so
    not through `sample()`, which asks every GPU of the box for its name, load and temperature too (~40 NVML
    calls on an 8-GPU box: tens of ms a step, in the worker that sets the pace of a data-parallel run)."""
    nv = _nvml()
    if nv is None:
        return None, None
    try:
        mem = nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(index))
    except nv.NVMLError:
        return None, None
    return mem.used / GIB, mem.total / GIB
