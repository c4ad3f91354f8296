"""The app with the real engine (no fake): a tiny model trains inside the TUI, and the adapter is where it says."""
from __future__ import annotations

import pytest

from tests.tui_fakes import screen_text, static_text, wait_until
from tui.app import TrainerApp
from tui.engine import RealEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_real_engine_trains_a_tiny_model_inside_the_app(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "adapter"
    app = TrainerApp(RealEngine(), dataset=str(small_dataset), output=str(out), preset="cpu",
                     model=str(tiny_model_dir), refresh_interval=None, stats_delay=0, show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.hardware is not None and app.dataset.report is not None, timeout=60)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training_result is not None or app.training.state == "failed",
                         timeout=240)
        await pilot.pause()
        assert app.training.state == "finished", screen_text(app)
        summary = static_text(app, "#run-summary")
        assert str(out.resolve()) in summary
        assert app.query_one("#loss-chart").train, "the loss chart received the real steps"
    assert (out / "adapter_model.safetensors").is_file() and (out / "run.json").is_file()
