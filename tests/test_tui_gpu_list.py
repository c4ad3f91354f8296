"""The preset tab's GPU list on a box with two H200s, GPU 0 holding another user's 60 GiB job: each GPU with its
free memory and what other processes hold, ticked from the keyboard; the ticked ids go into the run's config."""
from __future__ import annotations

import pytest
from textual.widgets import Input, SelectionList

from core.hardware import GpuInfo, GpuProcess, HardwareReport
from tests.tui_fakes import FakeEngine, screen_text, settle, static_text, wait_until
from tui.app import TrainerApp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)

BUSY_BOX = HardwareReport(
    gpus=[GpuInfo(0, "NVIDIA H200", total_gib=139.8, free_gib=79.6, used_gib=60.2, compute_capability=(9, 0),
                  bf16=True, others=[GpuProcess(4242, 59.7)]),
          GpuInfo(1, "NVIDIA H200", total_gib=139.8, free_gib=139.2, used_gib=0.6, compute_capability=(9, 0),
                  bf16=True)],
    driver_version="580.95.05", cuda_driver_version="13.0", torch_cuda=True)


@pytest.fixture(autouse=True)
def no_user_gpu_choice(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


async def test_ticking_gpu_1_runs_on_gpu_1_alone(tmp_path):
    engine = FakeEngine(BUSY_BOX)
    app = TrainerApp(engine, output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        # the first screen's hardware panel: GPUs by their NVML index, with what other processes hold
        overview = screen_text(app)
        assert "GPU 0  NVIDIA H200" in overview and "1 other process holds 59.7 GiB" in overview
        await pilot.press("2")
        await wait_until(pilot, lambda: app.presets.config is not None)
        text = screen_text(app)
        assert "GPU 0  NVIDIA H200  79.6 of 139.8 GiB free  · 1 other process holds 59.7 GiB" in text
        assert "GPU 1  NVIDIA H200  139.2 of 139.8 GiB free" in text
        # two identical H200s: the suggestion trains on both, and says so
        assert app.query_one("#field-gpus", Input).value == "2"
        assert "a run uses all 2 GPUs: 0, 1" in static_text(app, "#gpu-plan")

        app.query_one("#gpu-list", SelectionList).focus()
        await pilot.press("home", "down", "space")  # the second row is GPU 1
        await wait_until(pilot, lambda: app.presets.config is not None and app.presets.config.gpu_ids == (1,))
        assert app.query_one("#field-gpus", Input).value == "1"
        assert static_text(app, "#gpu-plan") == "a run uses GPU 1, as asked (--gpu-ids 1)"
        assert "other process" not in static_text(app, "#estimate")  # GPU 1 is idle: no warning

        await pilot.press("up", "space", "down", "space")  # now GPU 0 alone: the busy one, said before the run
        await wait_until(pilot, lambda: app.presets.config is not None and app.presets.config.gpu_ids == (0,))
        assert ("⚠ GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have 79.6 GiB"
                in static_text(app, "#estimate"))
        await pilot.press("up", "space", "down", "space")  # back to GPU 1
        await wait_until(pilot, lambda: app.presets.config is not None and app.presets.config.gpu_ids == (1,))

        app.query_one("#preset-list").focus()
        await pilot.press("4", "t")
        await wait_until(pilot, lambda: app.training.state == "finished")
        config = engine.train_calls[0]["config"]
        assert (config.gpu_ids, config.gpus) == ((1,), 1)


async def test_the_cpu_preset_hides_the_list_and_runs_without_gpu_ids(tmp_path):
    engine = FakeEngine(BUSY_BOX)
    app = TrainerApp(engine, output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False, preset="cpu")
    app.animation_level = "none"
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await wait_until(pilot, lambda: app.presets.config is not None)
        assert not app.query_one("#gpu-list").display
        assert "139.2 of 139.8 GiB free" not in screen_text(app)
        assert app.presets.config.gpu_ids == ()


def run_on_gpu_1(on_event, stop_event, output_dir):
    from pathlib import Path

    from core.events import Finished, MemorySample, RunStarted, StepLogged

    on_event(RunStarted(config={}, total_steps=1, train_rows=40, eval_rows=0, device="cuda", output_dir=output_dir))
    on_event(StepLogged(step=1, total_steps=1, epoch=1.0, loss=2.0, lr=2e-4, grad_norm=0.3, tokens_per_s=30000.0,
                        elapsed_s=1.0, eta_s=0.0))
    on_event(MemorySample(step=1, torch_allocated_gib=7.5, torch_reserved_gib=9.0, torch_peak_gib=8.0,
                          nvml_used_gib=9.5, nvml_total_gib=139.8, process_rss_gib=3.0, gpu_ids=[1]))
    on_event(Finished(output_dir=output_dir, steps=1, total_steps=1, train_loss=2.0, eval_loss=None,
                      stopped_early=False, runtime_s=1.0))
    return Path(output_dir)


async def test_the_memory_panel_names_the_gpu_the_run_is_on(tmp_path):
    engine = FakeEngine(BUSY_BOX, run=run_on_gpu_1)
    app = TrainerApp(engine, output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False, preset="modern-bf16")
    app.animation_level = "none"
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        await pilot.press("4", "t")
        await wait_until(pilot, lambda: app.training.state == "finished")
        await pilot.pause()
        assert "GPU 1 9.5 / 139.8 GiB" in screen_text(app)  # NVML's GPU 1, not "cuda:0"
