"""The TUI on a box with several identical GPUs: the suggestion trains on all of them (data-parallel), the estimate
is per GPU, the run gets the number of GPUs, and the memory panel draws one bar per GPU."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest
from textual.widgets import Input

from core.events import Finished, MemorySample, RunStarted, StepLogged
from core.hardware import GpuInfo, HardwareReport
from core.suggest import suggest
from tests.tui_fakes import FakeEngine, screen_text, settle, wait_until
from tui.app import TrainerApp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)


def h200s(n: int, free=(130.0, 120.0, 131.0, 131.0)) -> HardwareReport:
    return HardwareReport(gpus=[GpuInfo(i, "NVIDIA H200", total_gib=139.8, free_gib=free[i], used_gib=139.8 - free[i],
                                        compute_capability=(9, 0), bf16=True) for i in range(n)],
                          driver_version="580.1", cuda_driver_version="13.0", torch_cuda=True)


def test_several_identical_gpus_are_suggested_together_and_a_lone_one_alone():
    s = suggest(h200s(4))
    assert (s.preset, s.gpus) == ("modern-bf16", 4)
    assert "4 × NVIDIA H200 (120 GiB free on the fullest): data-parallel, one process per GPU" in s.reason
    assert suggest(h200s(1)).gpus == 1
    mixed = h200s(2)
    mixed.gpus[1] = GpuInfo(1, "NVIDIA T400", total_gib=2.0, free_gib=1.9, used_gib=0.1, compute_capability=(7, 5),
                            bf16=False)
    assert suggest(mixed).gpus == 1  # only identical GPUs with room are used together


def two_gpu_run(on_event: Callable, stop_event: threading.Event, output_dir: str) -> Path:
    on_event(RunStarted(config={}, total_steps=2, train_rows=40, eval_rows=2, device="cuda", output_dir=output_dir))
    for step in (1, 2):
        on_event(StepLogged(step=step, total_steps=2, epoch=step / 2, loss=2.0, lr=2e-4, grad_norm=0.3,
                            tokens_per_s=60000.0, elapsed_s=step, eta_s=2 - step))
        on_event(MemorySample(step=step, torch_allocated_gib=7.5, torch_reserved_gib=9.0, torch_peak_gib=8.0,
                              nvml_used_gib=11.0, nvml_total_gib=139.8, process_rss_gib=3.0,
                              gpus_used_gib=[11.0, 10.5 + step]))
    on_event(Finished(output_dir=output_dir, steps=2, total_steps=2, train_loss=2.0, eval_loss=None,
                      stopped_early=False, runtime_s=2.0))
    return Path(output_dir)


async def test_the_run_uses_every_gpu_and_the_memory_panel_has_a_bar_for_each(tmp_path):
    engine = FakeEngine(h200s(2), run=two_gpu_run)
    app = TrainerApp(engine, output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await wait_until(pilot, lambda: app.presets.config is not None)
        assert app.query_one("#field-gpus", Input).value == "2"
        await pilot.pause()
        text = screen_text(app)
        assert "VRAM estimate ≈" in text and "GiB per GPU (2 GPUs, data-parallel)" in text
        app.query_one("#field-gpus", Input).value = "3"  # more than the machine has: said before the run
        await wait_until(pilot, lambda: app.presets.config is not None and app.presets.config.gpus == 3)
        await pilot.pause()
        assert "3 GPUs asked for, this machine has 2: set GPUs to 2" in screen_text(app)
        app.query_one("#field-gpus", Input).value = "2"
        await wait_until(pilot, lambda: app.presets.config is not None and app.presets.config.gpus == 2)
        app.query_one("#preset-list").focus()
        await pilot.press("4", "t")
        await wait_until(pilot, lambda: app.training.state == "finished")
        await pilot.pause()
        assert engine.train_calls[0]["config"].gpus == 2
        text = screen_text(app)
        assert "GPU0 █░░░░░░░ 11.0/140 GiB" in text and "GPU1 █░░░░░░░ 12.5/140 GiB" in text


@pytest.mark.parametrize("free,base", [(130.0, "base unquantised"), (14.5, "base in 4-bit NF4")])
async def test_the_estimate_says_which_base_the_run_will_load_on_these_gpus(tmp_path, free, base, monkeypatch):
    """quantization auto depends on the memory the run's GPU leaves it: the preset panel says what the run will do
    (an H200: the 1.5B base in bf16; a 16 GB card: NF4), by the rule the run follows."""
    from core import gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # no choice of the user's (an earlier test's pin)
    monkeypatch.setattr(gpus, "_user_env", None)
    report = h200s(1, free=(free,))
    report.gpus[0] = GpuInfo(0, "NVIDIA H200" if free > 100 else "NVIDIA RTX 4060 Ti", total_gib=139.8 if free > 100
                             else 16.0, free_gib=free, used_gib=1.0, compute_capability=(9, 0), bf16=True)
    app = TrainerApp(FakeEngine(report), output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: app.presets.config is not None)
        await pilot.pause()
        assert app.presets.config.preset == "modern-bf16" and app.presets.config.quantization == "auto"
        await pilot.press("2")
        await pilot.pause()
        text = screen_text(app)
        assert f"GiB, {base}" in text, text
