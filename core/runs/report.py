"""`report`: one PNG of a run's loss and memory curves, for people who would rather look than read.

Reads what every run already keeps in its output folder: `metrics.jsonl` (step, eval and memory lines) and,
once the run has ended, `run.json` (preset, model, dataset). Works on a finished run, a stopped one, and a
`<output>.partial` folder of a run still going or killed. Matplotlib draws off-screen (Agg), never via pyplot.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InputError
from core.events import loss_text
from core.runs.output import atomic_path, metrics_rows, read_run_json

TRAIN_COLOUR = "#1f77b4"  # blue: training loss (the tests look for it in the PNG)
TRAIN_RAW_COLOUR = "#a6c8e6"  # light blue: every step, under the smoothed line of a long run
EVAL_COLOUR = "#d62728"  # red: held-out loss
MEMORY_SERIES = (  # (metrics key, legend label, colour); GPU readings when the run had them
    ("torch_allocated_gib", "torch allocated", "#2ca02c"),
    ("torch_peak_gib", "torch peak", "#ff7f0e"),
    ("nvml_used_gib", "GPU used (NVML, whole device)", "#9467bd"),
)
RSS_SERIES = ("process_rss_gib", "process RAM (RSS)", "#8c564b")  # CPU runs: the only reading there is
SMOOTH_FROM = 50  # steps: from here on the raw loss is drawn faint with a running mean over it
HOW_TO_POINT = "give the --output folder of `genaptitude-trainer train` (or its .partial folder while it runs)"


@dataclass
class Curves:
    """What the report plots, as read from the run (the tests compare it with metrics.jsonl)."""

    run_dir: Path
    title: str
    subtitle: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    memory: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)  # label -> (steps, GiB)
    total_steps: int = 0
    gpu_total_gib: float | None = None


def find_run(folder: str | os.PathLike) -> Path:
    """The run folder to read: `folder` itself, or `folder.partial` while a run is going in it or when only the
    unfinished one exists; what is a run folder is core.runs.history's rule (named_run_dir), as for `runs`."""
    from core.runs.history import named_run_dir

    return named_run_dir(folder)


def _short_model(model: str) -> str:
    return Path(model).name if model.startswith(("/", "~", ".")) else model


def read_curves(run_dir: str | os.PathLike) -> Curves:
    run = find_run(run_dir)
    steps: dict[int, float] = {}  # a step logged twice (resumed after a crash) keeps its last value
    evals: dict[int, float] = {}
    mem: dict[int, dict] = {}
    total = 0
    for row in metrics_rows(run / "metrics.jsonl"):
        kind, step = row.get("event"), row.get("step")
        if not isinstance(step, int):
            continue
        if kind == "step" and isinstance(row.get("loss"), (int, float)):
            steps[step] = float(row["loss"])
            total = max(total, int(row.get("total_steps") or 0))
        elif kind == "eval" and isinstance(row.get("eval_loss"), (int, float)):
            evals[step] = float(row["eval_loss"])
        elif kind == "memory":
            mem[step] = row
    if not steps:
        raise InputError(f"{run} has no training metrics yet (no step lines in metrics.jsonl)",
                         hint="the run writes a line per logged step; wait for its first step, or point at "
                              "a run that trained: " + HOW_TO_POINT)
    record = read_run_json(run)
    curves = Curves(run, *_titles(run, record, steps, total))
    curves.steps, curves.loss = sorted(steps), [steps[s] for s in sorted(steps)]
    curves.eval_steps, curves.eval_loss = sorted(evals), [evals[s] for s in sorted(evals)]
    curves.total_steps = max(total, curves.steps[-1])
    series = [s for s in MEMORY_SERIES if any(r.get(s[0]) is not None for r in mem.values())] or [RSS_SERIES]
    for key, label, _ in series:
        points = [(s, float(mem[s][key])) for s in sorted(mem) if mem[s].get(key) is not None]
        if points:
            curves.memory[label] = ([p[0] for p in points], [p[1] for p in points])
    totals = [r["nvml_total_gib"] for r in mem.values() if r.get("nvml_total_gib")]
    curves.gpu_total_gib = max(totals) if totals else None
    return curves


def _titles(run: Path, record: dict, steps: dict[int, float], total: int) -> tuple[str, str]:
    cfg = record.get("config", {})
    if cfg:
        data = record.get("dataset", {})
        dataset = Path(data.get("path", "?")).name + (f" ({data['rows']} rows)" if data.get("rows") else "")
        title = f"preset {cfg.get('preset', '?')} · model {_short_model(str(cfg.get('model', '?')))} · {dataset}"
    else:
        title = f"{run.name}: no run.json (the run is still going, or was killed)"
    last = max(steps)
    if not record:
        state = f"unfinished: step {last}/{total}"
    elif record.get("stopped_early"):
        state = f"stopped early at step {record.get('steps', last)}/{record.get('total_steps', total)}"
    else:
        state = f"finished: {record.get('steps', last)} steps"
    final = record.get("final", {})
    if final.get("runtime_s") is not None:
        state += f" in {final['runtime_s']:.0f}s"
    return title, f"{state} · folder {run.name}"


def running_mean(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def draw(curves: Curves):
    """The figure: loss vs step above, memory vs step below (a Figure, not pyplot: no global state)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 7), dpi=100, layout="constrained")
    loss_ax, mem_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    fig.suptitle(f"{curves.title}\n{curves.subtitle}", fontsize=10)
    n = len(curves.steps)
    if n >= SMOOTH_FROM:
        window = max(2, n // 25)
        loss_ax.plot(curves.steps, curves.loss, color=TRAIN_RAW_COLOUR, linewidth=1, label="train loss (each step)")
        loss_ax.plot(curves.steps, running_mean(curves.loss, window), color=TRAIN_COLOUR, linewidth=2,
                     label=f"train loss (mean of {window} steps)")
    else:
        loss_ax.plot(curves.steps, curves.loss, color=TRAIN_COLOUR, linewidth=2, marker="o" if n <= 20 else None,
                     markersize=3, label="train loss")
    if curves.eval_steps:
        loss_ax.plot(curves.eval_steps, curves.eval_loss, color=EVAL_COLOUR, linewidth=2, marker="s", markersize=5,
                     label="eval loss (held-out rows)")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("loss (lower is better)", fontsize=10, loc="left")
    mem_ax.set_title("memory" + (f" (GPU total {curves.gpu_total_gib:.1f} GiB)" if curves.gpu_total_gib else ""),
                     fontsize=10, loc="left")
    colours = {label: colour for _, label, colour in (*MEMORY_SERIES, RSS_SERIES)}
    for label, (xs, ys) in curves.memory.items():
        mem_ax.plot(xs, ys, color=colours[label], linewidth=2, label=label)
    if not curves.memory:
        mem_ax.text(0.5, 0.5, "no memory readings in metrics.jsonl", ha="center", va="center",
                    transform=mem_ax.transAxes, color="#666666")
    top = max((max(ys) for _, ys in curves.memory.values()), default=1.0)
    mem_ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    mem_ax.set_ylabel("GiB")
    mem_ax.set_xlabel("optimizer step")
    mem_ax.set_xlim(0, curves.total_steps * 1.02 + 0.3)  # room for the last marker
    mem_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, mem_ax):
        ax.grid(True, color="#dddddd", linewidth=0.8)
        ax.ticklabel_format(axis="y", useOffset=False)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=9, frameon=False)
    return fig


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, Curves]:
    """Draw the run's curves into `out` (default RUN_DIR/report.png), atomically: temp file, then rename."""
    curves = read_curves(run_dir)
    target = Path(out).expanduser() if out else curves.run_dir / "report.png"
    if target.suffix.lower() != ".png":
        raise InputError(f"{target}: the report is a PNG image", hint="give --out a file name ending in .png")
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        draw(curves).savefig(tmp, format="png", facecolor="white")
    return target, curves


def summary(curves: Curves) -> str:
    """One line for the terminal: how the losses moved."""
    text = f"train loss {loss_text(curves.loss[0])} → {loss_text(curves.loss[-1])} over steps {curves.steps[0]}-{curves.steps[-1]}"
    if curves.eval_loss:
        text += f"; eval loss {loss_text(curves.eval_loss[0])} → {loss_text(curves.eval_loss[-1])}"
    if any(math.isnan(v) for v in curves.loss):
        text += " (some losses are NaN: the run diverged)"
    return text
