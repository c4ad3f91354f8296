"""Run folders as the engine writes them (metrics.jsonl from the events' own to_json, run.json from the engine's
run_record), with fixed numbers, for the history tests of core and of the TUI; the `utc` and `runs` fixtures live in
tests/conftest.py."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from core import events as ev
from core.presets import config_for
from core.train.engine import run_record


def write_run(folder: Path, losses: list[float], *, total: int | None = None, evals: dict[int, float] | None = None,
              gpu: bool = False, preset: str = "cpu", model: str | None = None, stopped: bool = False,
              run_json: bool = True, finished_at: str = "2025-03-02T09:30:00+0000", runtime: float = 120.0,
              rate: float = 1200.0, checkpoint: int | None = None) -> Path:
    """metrics.jsonl as EventCallback writes it (step, memory, then eval lines) and run.json from `run_record`."""
    folder.mkdir(parents=True)
    total = total or len(losses)
    evals = evals or {}
    lines = []
    for step, loss in enumerate(losses, start=1):
        lines.append(ev.StepLogged(step=step, total_steps=total, epoch=step / total, loss=loss, lr=2e-4,
                                   grad_norm=0.5, tokens_per_s=rate + step, elapsed_s=runtime * step / len(losses),
                                   eta_s=1.0).to_json())
        lines.append(ev.MemorySample(
            step=step, torch_allocated_gib=1.0 + step / 10 if gpu else None, torch_reserved_gib=2.0 if gpu else None,
            torch_peak_gib=1.5 + step / 10 if gpu else None, nvml_used_gib=3.0 + step / 10 if gpu else None,
            nvml_total_gib=8.0 if gpu else None, process_rss_gib=2.0 + step / 100).to_json())
        if step in evals:
            lines.append(ev.EvalLogged(step=step, eval_loss=evals[step]).to_json())
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if checkpoint is not None:
        ckpt = folder / "checkpoints" / f"checkpoint-{checkpoint}"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text("{}")
    if run_json:
        config = config_for(preset, model=model)
        report = SimpleNamespace(path="dataset.jsonl", sha256="0" * 64, format="alpaca", examples=[None] * 40,
                                 problems=[])
        state = SimpleNamespace(global_step=len(losses), max_steps=total)
        callback = SimpleNamespace(last_loss=losses[-1], last_eval=evals[max(evals)] if evals else None,
                                   startup={"to_training_s": 7.5, "to_first_step_s": 11.8})
        record = run_record(config, report, config.model, state, callback, stopped, runtime)
        record["finished_at"] = finished_at  # fixed, for the snapshots
        (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder


def index_line(path: Path, started_at: str, preset: str = "", model: str = "") -> str:
    return json.dumps({"path": str(path), "preset": preset, "model": model, "dataset": "dataset.jsonl",
                       "started_at": started_at}) + "\n"


def utc_clock():
    """Times are shown in local time: fix it to UTC so numbers and snapshots are the same everywhere."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def some_runs(tmp_path: Path, monkeypatch) -> Path:
    """A working folder `runs/` with a finished, a stopped, an unfinished and a broken run, and junk around them."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GENAPTITUDE_TRAINER_HOME", str(home))
    base = tmp_path / "runs"
    write_run(base / "finished", [2.5, 2.0, 1.6, 1.25], evals={2: 1.9, 4: 1.4}, runtime=120.0, rate=1233.0)
    write_run(base / "stopped", [3.0, 2.75, 2.5], total=10, evals={}, gpu=True, preset="8gb",
              model="Qwen/Qwen2.5-1.5B-Instruct", stopped=True, finished_at="2025-03-03T14:00:00+0000",
              runtime=60.0, rate=4000.0, checkpoint=3)
    write_run(base / "adapter.partial", [2.2, 2.1, 1.9, 1.8, 1.7], total=20, evals={4: 2.0}, gpu=True,
              run_json=False, runtime=50.0, rate=900.0, checkpoint=4)
    broken = write_run(base / "broken", [4.0, 3.5], runtime=10.0, run_json=False)
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    stamp = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    os.utime(broken / "metrics.jsonl", (stamp, stamp))
    (base / "plain-adapter").mkdir()  # an adapter from elsewhere: no run.json, not listed
    (base / "plain-adapter" / "adapter_config.json").write_text("{}")
    write_run(base / "finished.old-1700000000", [9.0])  # finalize()'s short-lived backup, not a run
    (home / "runs.jsonl").write_text(
        index_line(tmp_path / "gone" / "adapter", "2025-03-05T10:00:00+0000")  # vanished since
        + "{this line was cut by kill -9\n"
        + index_line(base / "finished", "2025-03-02T09:27:00+0000", "cpu")
        + index_line(base / "adapter", "2025-03-04T08:15:00+0000", "t4-fp16", "Qwen/Qwen2.5-0.5B-Instruct"),
        encoding="utf-8")
    return base
