"""The app with the real engine (no fake): a tiny model trains inside the TUI, and the adapter is where it says."""
from __future__ import annotations

import pytest

from tests.tui_fakes import screen_text, static_text, wait_until
from tui.app import TrainerApp
from tui.bridge import RealEngine

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)


def real_app(engine, dataset, out, model) -> TrainerApp:
    """The app on the cpu preset with a real engine, no timers (refresh, stats delay) that would slow a test."""
    app = TrainerApp(engine, dataset=str(dataset), output=str(out), preset="cpu", model=str(model),
                     refresh_interval=None, stats_delay=0, show_startup_time=False)
    app.animation_level = "none"
    return app


async def ready(pilot, app) -> None:
    await wait_until(pilot, lambda: app.hardware is not None and app.dataset.report is not None, timeout=60)


@pytest.mark.slow
async def test_real_engine_trains_a_tiny_model_inside_the_app(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "adapter"
    app = real_app(RealEngine(), small_dataset, out, tiny_model_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training_result is not None or app.training.state == "failed",
                         timeout=240)
        await pilot.pause()
        assert app.training.state == "finished", screen_text(app)
        summary = static_text(app, "#run-summary")
        assert str(out.resolve()) in summary
        assert app.query_one("#loss-chart").train, "the loss chart received the real steps"
    assert (out / "adapter_model.safetensors").is_file() and (out / "run.json").is_file()


@pytest.mark.slow
async def test_app_runs_training_in_a_child_process_and_stop_saves_a_checkpoint(tiny_model_dir, small_dataset,
                                                                                 tmp_path):
    """The app's default engine: the run lives in `python -m core train --json`; `s` sends it SIGINT, which saves
    the adapter and a resumable checkpoint, and the panels were fed from the child's JSON events."""
    from dataclasses import replace

    from tui.bridge import ProcessEngine

    class LongRun(ProcessEngine):  # enough steps that `s` lands mid-run
        def train(self, config, *a, **kw):
            return super().train(replace(config, max_steps=5000), *a, **kw)

    out = tmp_path / "adapter"
    app = real_app(LongRun(), small_dataset, out, tiny_model_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("t")
        await wait_until(pilot, lambda: len(app.query_one("#loss-chart").train) >= 2, timeout=180)
        await pilot.press("s")
        await wait_until(pilot, lambda: app.training_result is not None or app.training.state == "failed",
                         timeout=180)
        await pilot.pause()
        assert app.training.state == "stopped", screen_text(app)
        assert app.training_result.stopped_early
        assert "stopped at step" in screen_text(app)
        assert str(out.resolve()) in static_text(app, "#run-summary")
    assert (out / "adapter_model.safetensors").is_file()
    assert list((out / "checkpoints").glob("checkpoint-*")), "a resumable checkpoint was saved on stop"


async def test_a_child_process_that_fails_shows_its_message_and_the_app_stays_usable(small_dataset, tmp_path):
    from tui.bridge import ProcessEngine

    app = real_app(ProcessEngine(), small_dataset, tmp_path / "o", tmp_path / "no-such-model")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.state == "failed", timeout=120)
        await pilot.pause()
        text = screen_text(app)
        assert "no-such-model" in text and "Traceback" not in text
        await pilot.press("1")  # still answers keys
        assert app.query_one("TabbedContent").active == "overview"
