"""The TUI's training tab during the first model download: bytes, rate, ETA and a bar, from the run's events."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import ProgressBar

from core.events import DownloadProgress, Finished, Phase, RunStarted
from tests.tui_fakes import NO_GPU, FakeEngine, log_text, screen_text, settle, wait_until
from tui.app import TrainerApp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)
REPO = "Qwen/Qwen2.5-1.5B-Instruct"
TOTAL = 3_087_467_144


def downloading_run(gate: threading.Event):
    def run(on_event, stop_event, output_dir) -> Path:
        on_event(Phase("downloading model", f"{REPO}: 7 file(s), 3.1 GB into /home/u/.cache/huggingface/hub"))
        on_event(DownloadProgress("downloading model", 1_200_000_000, TOTAL, repo_id=REPO, file="model.safetensors",
                                  rate_bps=45_000_000.0, eta_s=41.9))
        if not gate.wait(10):
            raise AssertionError("the test never opened the gate")
        on_event(DownloadProgress("downloading model", TOTAL, TOTAL, repo_id=REPO, file="model.safetensors"))
        on_event(RunStarted(config={}, total_steps=10, train_rows=3, eval_rows=0, device="cpu", output_dir=output_dir))
        on_event(Finished(output_dir=output_dir, steps=10, total_steps=10, train_loss=1.0, eval_loss=None,
                          stopped_early=False, runtime_s=5.0))
        return Path(output_dir)
    return run


async def test_the_first_download_shows_bytes_rate_eta_and_a_bar(tmp_path):
    gate = threading.Event()
    engine = FakeEngine(NO_GPU, run=downloading_run(gate))
    app = TrainerApp(engine, refresh_interval=None, stats_delay=0, show_startup_time=False,
                     output=str(tmp_path / "adapter"))
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.query_one(ProgressBar).total == TOTAL)
        await pilot.pause()
        assert f"downloading {REPO}  1.2 GB / 3.1 GB  38%  45.0 MB/s  ETA 42s  model.safetensors" in screen_text(app)
        assert app.query_one(ProgressBar).progress == 1_200_000_000
        assert f"▶ downloading model: {REPO}: 7 file(s), 3.1 GB" in log_text(app)
        gate.set()
        await wait_until(pilot, lambda: app.training.state == "finished")
        await pilot.pause()
        assert f"downloaded {REPO} (3.1 GB / 3.1 GB 100%)" in log_text(app)  # (log_text single-spaces)
        assert app.query_one(ProgressBar).total == 10  # the bar counts steps once the run starts
