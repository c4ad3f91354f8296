"""Where a step's time goes: torch.profiler over a few steady steps of a run or a bench configuration, written as
a text report (kernel launches a step, the GPU's idle time charged to the CPU op open when each gap began, the
busiest kernels and CPU ops).

Set GENAPTITUDE_TRAINER_PROFILE=<folder> for `bench` (one report per configuration) or `train` (one per worker:
rank0.txt, rank1.txt, ...); GENAPTITUDE_TRAINER_PROFILE_STACKS=1 adds the GPU time by Python line;
GENAPTITUDE_TRAINER_PROFILE_PYTHON=1 profiles the same steps with cProfile instead (the CPU's Python time by function
and by package: where a step bound by the CPU spends it).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

PROFILE_ENV = "GENAPTITUDE_TRAINER_PROFILE"
START, STEPS = 8, 3  # after warm-up (Triton compiles, the allocator's first growth), a few steady steps


def profile_steps(trainer, name: str) -> bool:
    """With GENAPTITUDE_TRAINER_PROFILE set, profile steps START..START+STEPS of `trainer` into <folder>/<name>.txt."""
    folder = os.environ.get(PROFILE_ENV)
    if not folder:
        return False
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    make = python_profiler if os.environ.get(f"{PROFILE_ENV}_PYTHON") == "1" else step_profiler
    trainer.add_callback(make(Path(folder) / f"{safe[:80]}.txt", start=START, steps=STEPS))
    return True


def _window(path: Path, start: int, steps: int, begin, end):
    """A callback that calls `begin()` as step `start` begins and `end(wall)` (returning the report's text, written
    to `path`) as step start + steps ends, the GPU synchronised at both edges; what both profilers share."""
    from transformers import TrainerCallback

    class Window(TrainerCallback):
        t0 = None

        def on_step_begin(self, args, state, control, **k):
            if state.global_step == start:
                _sync()
                self.t0 = time.perf_counter()
                begin()

        def on_step_end(self, args, state, control, **k):
            if self.t0 is not None and state.global_step == start + steps:
                _sync()
                wall = time.perf_counter() - self.t0
                self.t0 = None
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(end(wall))

    return Window()


def python_profiler(path: Path, start: int, steps: int):
    """cProfile over `steps` steady steps: Python time a step by package and the functions that take most."""
    import cProfile
    import pstats

    prof = cProfile.Profile()

    def end(wall: float) -> str:
        prof.disable()
        return python_report(pstats.Stats(prof), steps, wall)

    return _window(path, start, steps, prof.enable, end)


def _package(filename: str) -> str:
    """'core', a site-packages top folder (torch, transformers, peft...), or 'builtin' (C functions and methods)."""
    if not filename.endswith(".py"):
        return "builtin"
    if "site-packages/" in filename:
        return filename.split("site-packages/")[-1].split("/")[0]
    parts = Path(filename).parts
    return "core" if "core" in parts else Path(filename).stem


def python_report(stats, steps: int, wall: float, top: int = 40) -> str:
    """A cProfile run as text: time a step by package (own time: each function's body, not what it calls) and the
    functions with most own time."""
    by: dict = {}
    rows = []
    for (filename, line, func), (_, calls, own, _cum, _) in stats.stats.items():
        package = _package(filename)
        by[package] = by.get(package, 0.0) + own
        rows.append((own, calls, f"{package}: {Path(filename).name}:{line} {func}"))
    lines = [f"wall {1e3 * wall / steps:.1f} ms/step under cProfile; own time by package (ms/step):"]
    lines += [f"  {t / steps * 1e3:8.2f}  {p}" for p, t in sorted(by.items(), key=lambda kv: -kv[1])[:12]]
    lines.append("\nfunctions by own time (ms/step, calls/step):")
    lines += [f"  {own / steps * 1e3:8.2f} {calls / steps:8.1f}  {name}" for own, calls, name in sorted(rows, reverse=True)[:top]]
    return "\n".join(lines) + "\n"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_profiler(path: Path, start: int, steps: int):
    """torch.profiler over `steps` steady steps: the kernels that take the GPU time and the ops that take the CPU
    (with GENAPTITUDE_TRAINER_PROFILE_STACKS=1, also the GPU time by the Python lines that asked for it)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    stacks = os.environ.get(f"{PROFILE_ENV}_STACKS") == "1"
    gpu = [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
    prof = profile(activities=[ProfilerActivity.CPU, *gpu], with_stack=stacks)

    def end(wall: float) -> str:
        prof.__exit__(None, None, None)
        trace = path.with_suffix(".trace.json")  # (one per report: workers profile at once)
        path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))
        idle = idle_report(trace, steps) + "\n\n" + sync_report(trace, steps)
        trace.unlink()
        ka = prof.key_averages()
        gpu_ms = sum(e.self_device_time_total for e in ka) / 1e3
        launches = sum(e.count for e in ka if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx",
                                                          "cudaLaunchKernelExC"))  # (Ex: Triton)
        return (f"wall {1e3 * wall / steps:.1f} ms/step, GPU kernel time {gpu_ms / steps:.1f} ms/step, "
                f"kernel launches {launches / steps:.0f}/step\n\n{idle}\n\n"
                + ka.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=60) + "\n\n"
                + ka.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60) + "\n\n"
                + ka.table(sort_by="count", row_limit=30, max_name_column_width=60)
                + ("\n\nby Python stack (5 frames):\n" + prof.key_averages(group_by_stack_n=5).table(
                    sort_by="self_device_time_total", row_limit=40, max_name_column_width=60) if stacks else ""))

    return _window(path, start, steps, prof.__enter__, end)


def _open_at(spans: list, at: float) -> tuple | None:
    """The innermost of `spans` ((start, end, name), sorted by start, nested as one thread's ops are) open at `at`."""
    best = None
    for span in spans:
        if span[0] > at:
            break
        if span[1] >= at:
            best = span  # a later start that is still open lies inside the earlier ones
    return best


def sync_report(trace: Path, steps: int, top: int = 15) -> str:
    """Where the CPU waited for the GPU (cudaStreamSynchronize and the like): how often a step and how long, by the
    innermost op open on that thread, and with stacks on by the innermost Python function too. A step that waits
    cannot queue the next one's kernels while the GPU works."""
    events = json.loads(trace.read_text())["traceEvents"]
    waits = [e for e in events if "Synchronize" in e.get("name", "") and "dur" in e]
    lines = [f"host waits for the GPU: {len(waits) / steps:.1f} a step, "
             f"{sum(e['dur'] for e in waits) / 1e3 / steps:.1f} ms/step, by the op (and Python line) that asked:"]
    spans: dict = {}
    for e in events:
        if e.get("cat") in ("cpu_op", "python_function") and "dur" in e:
            spans.setdefault((e["tid"], e["cat"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    for v in spans.values():
        v.sort()
    table: dict = {}
    for e in waits:
        names = []
        for cat in ("cpu_op", "python_function"):
            span = _open_at(spans.get((e["tid"], cat), []), e["ts"])
            if span:
                names.append(span[2])
        key = " <- ".join(names) or e["name"]
        n, t = table.get(key, (0, 0.0))
        table[key] = (n + 1, t + e["dur"])
    for key, (n, t) in sorted(table.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"    {n / steps:5.1f}/step {t / 1e3 / steps:7.2f} ms/step  {key[:150]}")
    return "\n".join(lines)


def idle_report(trace: Path, steps: int, top: int = 20) -> str:
    """Where the GPU waited: the gaps between consecutive kernels, summed by the CPU op running when each gap began
    (innermost and outermost), on each of the two busiest threads (the main one and autograd's backward one)."""
    events = json.loads(trace.read_text())["traceEvents"]
    kernels = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "kernel")
    ops = [e for e in events if e.get("cat") in ("cpu_op", "user_annotation", "python_function") and "dur" in e]
    if not kernels or not ops:
        return "GPU idle: no kernels or CPU ops in the trace"
    gaps, end = [], kernels[0][1]
    for start, stop in kernels[1:]:
        if start - end > 2.0:  # µs: back-to-back kernels leave ~1-2 µs between them
            gaps.append((end, start - end))
        end = max(end, stop)
    span = kernels[-1][1] - kernels[0][0]
    lines = [f"GPU idle {sum(g for _, g in gaps) / 1e3 / steps:.1f} ms/step of {span / 1e3 / steps:.1f} "
             "(gaps > 2 us between kernels), by the CPU op open when each gap began:"]
    count: dict = {}
    for e in ops:
        count[e["tid"]] = count.get(e["tid"], 0) + 1
    for tid in sorted(count, key=lambda t: -count[t])[:2]:
        mine = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in ops if e["tid"] == tid)
        tables = ({}, {})  # innermost, outermost
        stack: list = []  # the ops open at the current time, outermost first (ops on one thread nest)
        i = 0
        for at, gap in gaps:  # in time order: one sweep over the ops
            while i < len(mine) and mine[i][0] <= at:
                while stack and stack[-1][1] < mine[i][0]:
                    stack.pop()
                stack.append(mine[i])
                i += 1
            open_ = [op for op in stack if op[1] >= at]
            for table, op in zip(tables, (open_[-1:], open_[:1])):
                name = op[0][2] if op else "(none)"
                table[name] = table.get(name, 0.0) + gap
        for label, table in zip(("innermost", "outermost"), tables):
            lines.append(f"  thread {tid} ({count[tid]} ops), {label}:")
            for name, t in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
                lines.append(f"    {t / 1e3 / steps:7.2f} ms/step  {name[:90]}")
    return "\n".join(lines)
