"""Training throughput with the TUI attached vs the headless CLI, same preset, data and steps.

    python benchmarks/tui_overhead.py --steps 16 --pairs 2 [--engine thread] > benchmarks/results/tui-overhead.json

The TUI runs in Textual's headless driver (the app renders every frame as it would in a terminal) with the real
engine; the CLI runs `genaptitude-trainer train --json`. With `--engine process` (the app's default) the app runs
training in a child process and the CLI runs as a process; with `--engine thread` the app trains in a thread and
the CLI's `main` runs in this process. One warm-up run comes first. Both read tokens/s from their run's metrics.jsonl
(median over steps after the first 4). Runs alternate (CLI, TUI, TUI, CLI, ...) so drift hits both.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rate(out: Path, skip: int = 4) -> float:
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"event": "step"' in l]
    tail = [s["tokens_per_s"] for s in steps[skip:]]
    return statistics.median(tail)


PRESET, MODEL, ENGINE = "cpu", None, "process"


def cli_run(dataset: str, steps: int, out: Path) -> float:
    """`genaptitude-trainer train --json` as its own process, like the app's default (child-process) engine."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    model = ["--model", MODEL] if MODEL else []
    subprocess.run([sys.executable, "-m", "core", "train", "--dataset", dataset, "--preset", PRESET, *model,
                    "--max-steps", str(steps), "--output", str(out), "--json"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return rate(out)


def cli_run_in_process(dataset: str, steps: int, out: Path) -> float:
    """`genaptitude-trainer train --json`, in this process (like thread-engine TUI runs), its JSON to a file."""
    import contextlib

    from core.cli import main

    model = ["--model", MODEL] if MODEL else []
    with open(out.parent / f"{out.name}.jsonl", "w") as sink, contextlib.redirect_stdout(sink):
        code = main(["train", "--dataset", dataset, "--preset", PRESET, *model, "--max-steps", str(steps),
                     "--output", str(out), "--json"])
    if code != 0:
        raise SystemExit(f"CLI run failed with exit code {code}")
    return rate(out)


def tui_run(dataset: str, steps: int, out: Path) -> float:
    from tui.app import TrainerApp
    from tui.bridge import ProcessEngine, RealEngine

    class Engine(ProcessEngine if ENGINE == "process" else RealEngine):  # same run as the CLI: only max_steps differs from the preset
        def train(self, config, *a, **kw):
            from dataclasses import replace
            return super().train(replace(config, max_steps=steps), *a, **kw)

    async def go():
        app = TrainerApp(Engine(), dataset=dataset, output=str(out), preset=PRESET, model=MODEL, refresh_interval=1.0,
                         stats_delay=0.5, show_startup_time=False)
        async with app.run_test(size=(120, 40)) as pilot:
            while app.hardware is None or app.dataset.report is None:
                await asyncio.sleep(0.1)
            await pilot.press("4", "t")  # watch the training tab, as a user would
            while app.training_result is None and app.training.state != "failed":
                await asyncio.sleep(0.2)
    asyncio.run(go())
    return rate(out)


def _gpu() -> str:
    from core.hardware import probe

    gpus = probe().gpus
    return gpus[0].name if gpus else "none"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default=str(ROOT / "dataset.jsonl"))
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--model", default=None)
    p.add_argument("--engine", choices=["process", "thread"], default="process",
                   help="process: the app's default (run in a child process; CLI runs as a process too); "
                        "thread: the run in a thread of the app (CLI runs in this process too)")
    a = p.parse_args()
    global PRESET, MODEL, ENGINE
    PRESET, MODEL, ENGINE = a.preset, a.model, a.engine
    run_cli = cli_run if ENGINE == "process" else cli_run_in_process
    work = Path(tempfile.mkdtemp())
    # One unmeasured run first (disk caches, Triton kernels); then CLI and TUI runs alternate.
    print(f"warm-up run: {run_cli(a.dataset, min(a.steps, 10), work / 'warmup'):.1f} tokens/s", file=sys.stderr)
    cli, tui = [], []
    for i in range(a.pairs):
        order = [("cli", run_cli, cli), ("tui", tui_run, tui)]
        for name, fn, acc in (order if i % 2 == 0 else order[::-1]):
            acc.append(fn(a.dataset, a.steps, work / f"{name}-{i}"))
            print(f"{name} run {i}: {acc[-1]:.1f} tokens/s", file=sys.stderr, flush=True)
    result = {"engine": a.engine, "preset": a.preset, "model": a.model or "preset default", "steps": a.steps, "cli_tokens_per_s": cli,
              "tui_tokens_per_s": tui, "tui_vs_cli": statistics.mean(tui) / statistics.mean(cli),
              "machine": f"{os.cpu_count()} CPU cores", "gpu": _gpu()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
