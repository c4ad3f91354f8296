"""Which preset fits this machine: `suggest` picks one from a hardware report (and how many identical GPUs to
train on), with the reason the user sees. No torch here: the TUI asks on start-up."""
from __future__ import annotations

from dataclasses import dataclass

from core.presets import PRESETS


@dataclass(frozen=True)
class Suggestion:
    preset: str
    reason: str
    gpus: int = 1  # identical GPUs to train on data-parallel


def suggest(report) -> Suggestion:
    """Pick a preset from compute capability and free VRAM (`report` is a hardware.HardwareReport)."""
    if not report.gpus:
        why = report.nvml_error or "no NVIDIA GPU found"
        return Suggestion("cpu", f"{why}; training runs on the CPU with the bundled small model")
    if report.torch_cuda is False:
        return Suggestion("cpu", f"{report.gpus[0].name} is present but this torch build has no CUDA "
                                 "(pip install a CUDA build of torch to use it)")
    gpu = max(report.gpus, key=lambda g: g.free_gib)
    pick = _pick(gpu)
    same = [g for g in report.gpus if g.name == gpu.name and _pick(g).preset != "cpu"]
    if len(same) > 1 and pick.preset != "cpu":
        least = min(g.free_gib for g in same)
        base = _pick(min(same, key=lambda g: g.free_gib))  # every GPU must fit the preset
        return Suggestion(base.preset, f"{base.reason}; {len(same)} × {gpu.name} ({least:.0f} GiB free on the "
                                       f"fullest): data-parallel, one process per GPU, same effective batch",
                          gpus=len(same))
    return pick


def _pick(gpu) -> Suggestion:
    """The first preset for this GPU's kind (bf16, fp16 tensor cores, neither) whose min_vram_gib it has free."""
    cc = gpu.compute_capability
    cc_text = f"compute capability {cc[0]}.{cc[1]}" if cc else "unknown compute capability"
    kind = ("modern-bf16", "8gb") if gpu.bf16 else ("t4-fp16",) if cc and cc >= (7, 0) else ("t4-fp32",)
    name = next((n for n in kind if gpu.free_gib >= PRESETS[n].min_vram_gib), None)
    if name is None:
        return Suggestion("cpu", f"{gpu.name} has only {gpu.free_gib:.1f} GiB free; a 1.5B QLoRA run needs "
                                 f"~{PRESETS[kind[-1]].min_vram_gib:.0f} GiB")
    why = {"modern-bf16": f"{cc_text} has bf16, {gpu.free_gib:.0f} GiB free",
           "8gb": f"{cc_text} has bf16 but only {gpu.free_gib:.1f} GiB free; smaller micro-batches, same effective "
                  "batch",
           "t4-fp16": f"{cc_text} has fp16 tensor cores but no bf16",
           "t4-fp32": f"{cc_text} has no fast half precision; fp32 compute is safest"}[name]
    return Suggestion(name, f"{gpu.name}: {why}")
