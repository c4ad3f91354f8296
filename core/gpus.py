"""Which GPUs a run uses, and why: the one answer every command (and the TUI) asks for.

On a box with several GPUs a process that sees them all falls into nn.DataParallel (TRL's SFTTrainer refuses it)
or lands on GPU 0, often the busy one. So before torch starts CUDA, a run is given exactly its GPUs through
CUDA_VISIBLE_DEVICES: the ones asked for (`--gpu-ids 1,3`), else the N with the most free memory as NVML reports it
(`--gpus N`, 1 by default). A CUDA_VISIBLE_DEVICES the user set is respected: only those GPUs are candidates.

GPUs are named by NVML's index (what nvidia-smi shows: PCI bus order). CUDA numbers them fastest first unless
CUDA_DEVICE_ORDER=PCI_BUS_ID, so a pinned run sets that too, and the indices mean the same GPU to both.
`choose` is pure (tests give it GpuInfo lists); `plan` reads NVML and the environment; `pin` applies a plan.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from typing import Mapping, MutableMapping

from core.errors import InputError, Problem
from core.hardware import GpuInfo
from core.presets import TrainConfig, batch_description

# A GPU with another compute process on it gets a warning. So does one where NVML lists none but more than this
# share of the memory is in use: a process in another container is often not listed. Below it, a desktop's display
# (1-2 GiB of an 8 GiB card, not a compute process) does not warn.
BUSY_FRACTION = 0.25
PIN_VARS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
_user_env: dict[str, str | None] | None = None  # PIN_VARS as they were before this process pinned itself


@dataclass
class GpuPlan:
    gpus: list[GpuInfo]  # the GPUs the run uses, by NVML index, in the order CUDA will number them
    candidates: list[GpuInfo]  # the GPUs a run may use here (all, or those CUDA_VISIBLE_DEVICES names)
    reason: str  # one sentence: which and why
    warnings: list[str] = field(default_factory=list)  # GPUs other processes already fill, with numbers
    env: dict[str, str] = field(default_factory=dict)  # what to set before CUDA starts ({}: leave it as it is)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)


def ids_text(ids) -> str:
    return ", ".join(str(i) for i in ids)


def flag(ids) -> str:
    """The ids as the --gpu-ids flag and CUDA_VISIBLE_DEVICES write them: '1,3'."""
    return ",".join(str(i) for i in ids)


def parse_ids(text: str) -> tuple[int, ...]:
    """`--gpu-ids 1,3` → (1, 3); a ValueError names what is wrong."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"{part!r} is not a GPU index (give NVML indices as nvidia-smi shows them, e.g. 1,3)")
        if int(part) in out:
            raise ValueError(f"GPU {part} is named twice")
        out.append(int(part))
    return tuple(out)


def visible_gpus(gpus: list[GpuInfo], visible: str | None) -> list[GpuInfo] | None:
    """The GPUs a CUDA_VISIBLE_DEVICES value names, in its order (CUDA stops at the first entry it cannot match);
    None when an entry is something NVML indices cannot name (a MIG device), so the value must be left alone."""
    if visible is None:
        return list(gpus)
    out: list[GpuInfo] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit():
            match = next((g for g in gpus if g.index == int(entry)), None)
        elif entry.startswith("GPU-"):  # a UUID, or a unique prefix of one, as CUDA accepts
            found = [g for g in gpus if g.uuid and g.uuid.startswith(entry)]
            match = found[0] if len(found) == 1 else None
        elif entry.startswith("MIG-"):
            return None
        else:
            match = None
        if match is None or match in out:
            break
        out.append(match)
    return out


def busy_warning(g: GpuInfo, need_gib: float | None = None) -> str | None:
    """'GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have 79.6 GiB', or None if it is idle."""
    if not g.others and g.used_gib <= BUSY_FRACTION * g.total_gib:
        return None
    n = len(g.others)
    who = (f"by {n} other process{'es' if n != 1 else ''}" if n
           else "by processes NVML does not list (another container?)")
    text = f"GPU {g.index} has {g.used_gib:.1f} of {g.total_gib:.1f} GiB in use {who}; the run would have " \
           f"{g.free_gib:.1f} GiB"
    if need_gib is not None and need_gib > g.free_gib:
        text += f", less than the ≈ {need_gib:.1f} GiB it needs: it would run out of memory"
    return text


def busy_warnings(chosen: list[GpuInfo], need_gib: float | None = None) -> list[str]:
    return [w for g in chosen if (w := busy_warning(g, need_gib))]


def choose(gpus: list[GpuInfo], *, count: int = 1, ids: tuple[int, ...] = (), visible: str | None = None,
           need_gib: float | None = None, why_none: str = "") -> GpuPlan:
    """The GPUs a run of `count` GPUs uses (or exactly `ids`), among those `visible` (CUDA_VISIBLE_DEVICES) names.
    Raises InputError (exit 2) for an id that is not there or more GPUs than there are."""
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    candidates = visible_gpus(gpus, visible)
    if candidates is None:
        return GpuPlan([], list(gpus), f"CUDA_VISIBLE_DEVICES={visible} names devices NVML does not number (MIG); "
                                       "it is left as set")
    if not gpus:
        if ids:
            raise InputError(f"--gpu-ids {flag(ids)}: no GPU here ({why_none or 'NVML lists none'})",
                             hint="leave --gpu-ids out, or use --preset cpu")
        return GpuPlan([], [], f"no GPU: {why_none or 'NVML lists none'}")
    if not candidates:
        if ids or count > 1:
            raise InputError(f"no GPU is visible{where}", hint="unset CUDA_VISIBLE_DEVICES, or list GPUs in it, e.g. 0")
        # CUDA_VISIBLE_DEVICES="" (or -1) is how a user hides the GPUs on purpose: CPU work goes on
        return GpuPlan([], [], f"no GPU is visible{where}: the GPUs are hidden from this run")
    have = ids_text(g.index for g in candidates)
    if ids:
        unknown = [i for i in ids if i not in {g.index for g in candidates}]
        if unknown:
            missing = ", ".join(f"GPU {i}" for i in unknown)
            raise InputError(f"--gpu-ids {flag(ids)}: {missing} {'is' if len(unknown) == 1 else 'are'} not "
                             f"here{where}; the GPUs are {have}",
                             hint=f"choose among {have} (nvidia-smi numbers them the same way)")
        chosen = [next(g for g in candidates if g.index == i) for i in ids]
        reason = f"GPU{'s' if len(ids) > 1 else ''} {ids_text(ids)}, as asked (--gpu-ids {flag(ids)})"
    else:
        if count > len(candidates):
            raise InputError(f"{count} GPUs asked for, but {len(candidates)} {'is' if len(candidates) == 1 else 'are'}"
                             f" here{where}: {have}", hint=f"use --gpus {len(candidates)} (or --gpus all)")
        # The most free memory first; a tie keeps NVML order (GPU 0 before GPU 1), so a run is reproducible.
        chosen = sorted(sorted(candidates, key=lambda g: -g.free_gib)[:count], key=lambda g: g.index)
        if count == len(candidates):
            reason = (f"GPU {have}, the only one{where}" if count == 1
                      else f"all {count} GPUs{where}: {have}")
        elif count == 1:
            g = chosen[0]
            rest = ", ".join(f"GPU {o.index} {o.free_gib:.1f}" for o in candidates if o is not g)
            reason = (f"GPU {g.index} ({g.name}): the most free memory of {len(candidates)} GPUs{where}, "
                      f"{g.free_gib:.1f} GiB free ({rest} GiB free)")
        else:
            reason = (f"GPUs {ids_text(g.index for g in chosen)}: the {count} with the most free memory of "
                      f"{len(candidates)}{where} ({', '.join(f'GPU {g.index} {g.free_gib:.1f}' for g in chosen)} "
                      "GiB free)")
    warnings = busy_warnings(chosen, need_gib)
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": flag(g.index for g in chosen)}
    return GpuPlan(chosen, candidates, reason, warnings, env)


def plan(count: int = 1, ids: tuple[int, ...] = (), *, need_gib: float | None = None,
         environ: Mapping[str, str] | None = None) -> GpuPlan:
    """`choose` on what NVML reports now and this process's CUDA_VISIBLE_DEVICES."""
    from core.hardware import probe

    environ = os.environ if environ is None else environ
    report = probe()
    return choose(report.gpus, count=count, ids=tuple(ids), visible=environ.get("CUDA_VISIBLE_DEVICES"),
                  need_gib=need_gib, why_none=report.nvml_error or "")


def pin(p: GpuPlan, environ: MutableMapping[str, str] | None = None) -> bool:
    """Set the plan's CUDA_VISIBLE_DEVICES in this process (its children inherit it). Must run before torch starts
    CUDA, which reads the variable once; returns False (and changes nothing) if CUDA has already started."""
    environ = os.environ if environ is None else environ
    if not p.env:
        return True
    global _user_env
    if environ is os.environ:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            return environ.get("CUDA_VISIBLE_DEVICES") == p.env["CUDA_VISIBLE_DEVICES"]
        if _user_env is None:
            _user_env = {k: environ.get(k) for k in PIN_VARS}
    environ.update(p.env)
    return True


def user_env() -> dict[str, str | None]:
    """CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER as the user set them (None: unset), even after this process
    pinned itself: the TUI pins itself for evaluate and chat, and its next run process must choose afresh."""
    return dict(_user_env) if _user_env is not None else {k: os.environ.get(k) for k in PIN_VARS}


def nvml_index(ordinal: int = 0, environ: Mapping[str, str] | None = None) -> int:
    """The NVML index of CUDA device `ordinal` in this process (cuda:0 of a run pinned to GPU 1 is NVML's GPU 1),
    for reading its memory through NVML."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return ordinal
    entries = [e.strip() for e in visible.split(",")]
    if ordinal < len(entries) and entries[ordinal].isdigit():
        return int(entries[ordinal])
    if ordinal < len(entries) and entries[ordinal].startswith("GPU-"):
        from core.hardware import probe

        for g in probe().gpus:
            if g.uuid.startswith(entries[ordinal]):
                return g.index
    return ordinal


def describe(g: GpuInfo) -> str:
    """'GPU 1: NVIDIA H200, 139.1 of 139.8 GiB free; 2 other processes hold 60.2 GiB' (doctor, TUI)."""
    text = f"GPU {g.index}: {g.name}, {g.free_gib:.1f} of {g.total_gib:.1f} GiB free"
    return f"{text}; {others_text(g)}" if g.others else text


def others_text(g: GpuInfo) -> str:
    """'1 other process holds 59.7 GiB' ('' when none is listed)."""
    n = len(g.others)
    if not n:
        return ""
    return f"{n} other process{'es' if n != 1 else ''} hold{'s' if n == 1 else ''} {g.others_gib:.1f} GiB"


def fit_problems(config: TrainConfig, *, count: int, bf16: bool, name: str, need_gib: float | None = None,
                 free_gib: float | None = None) -> list[Problem]:
    """What keeps a run of `config` from these GPUs: `count` of them, the one it runs on named `name`, with bf16 or
    not, `free_gib` free against the estimate `need_gib` (where both are known). The one rule engine.check_device
    (facts from torch, before loading) and the TUI's preset tab (facts from NVML, before starting) ask."""
    out = []
    if config.gpus > count:
        out.append(Problem(f"{config.gpus} GPUs asked for, this machine has {count}", field="gpus",
                           fix=f"set GPUs to {count} (--gpus {count})"))
    if (config.autocast == "bf16" or config.compute_dtype == "bfloat16") and not bf16:
        out.append(Problem(f"preset {config.preset!r} uses bf16, which {name} does not support (compute capability "
                           "< 8.0)", field="autocast", fix="pick t4-fp16 (fp16 tensor cores) or t4-fp32"))
    if need_gib is not None and free_gib is not None and need_gib > free_gib:
        out.append(Problem(f"needs ≈ {need_gib:.1f} GiB but {name} has {free_gib:.1f} GiB free", field="batch_size",
                           fix="lower batch size or max length (an out-of-memory step halves the batch and doubles "
                               "accumulation)"))
    return out


def per_device(config: TrainConfig, n: int) -> tuple[TrainConfig, str]:
    """The per-process config of an n-way data-parallel run with the same effective batch, and how it was kept.
    Accumulation is divided first (no change to each micro-batch), then the token budget or the rows."""
    if n <= 1:
        return config, ""
    if config.gpu_batch == "each":
        return config, (f"each GPU keeps {batch_description(config)[1]}: the effective batch is {n}× one GPU's "
                        "(--gpu-batch each)")
    if config.grad_accum % n == 0:
        return (replace(config, grad_accum=config.grad_accum // n),
                f"gradient accumulation {config.grad_accum} → {config.grad_accum // n} per GPU")
    if config.batch_tokens > 0:
        budget = max(config.batch_tokens // n, 1)
        return (replace(config, batch_tokens=budget, batch_size=max(config.batch_size // n, 1)),
                f"micro-batches of ≤{config.batch_tokens:,} → ≤{budget:,} tokens per GPU")
    if config.batch_size % n == 0:
        return (replace(config, batch_size=config.batch_size // n),
                f"batch {config.batch_size} → {config.batch_size // n} rows per GPU")
    return config, (f"batch {config.batch_size} × {config.grad_accum} cannot be split {n} ways: each GPU keeps it, "
                    f"the effective batch grows {n}×")
