"""Pilot tests of a training run in the TUI with a scripted engine: a finished, failed or live run, stop, quit
(stop, leave or keep watching), and an existing output offered for resume."""
from __future__ import annotations

import threading

import pytest
from textual.widgets import ProgressBar, Static

from tests.tui_fakes import (FakeEngine, NO_GPU, crashing_run, failing_run, log_text, make_app, screen_text, settle,
                             static_text, stoppable_run, wait_until)
from core.events import RunStarted, StepLogged
from tui.app import EVAL_ROWS
from tui.screens.confirm import ChoiceScreen
from tui.screens.evaluate import EvaluateScreen

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)


# -- training ---------------------------------------------------------------------------------------------
async def test_a_finished_run_shows_metrics_memory_log_and_next_steps(tmp_path):
    engine = FakeEngine(NO_GPU)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.state == "finished")
        await pilot.pause()
        out = str(tmp_path / "adapter")
        call = engine.train_calls[0]
        assert call["dataset"] == "dataset.jsonl" and call["output"] == out and call["config"].preset == "cpu"
        text = screen_text(app)
        assert "✔ Finished: 4/4 steps in 12s · train loss 1.2500 · eval loss 1.4000" in text
        assert f"Adapter: {out}" in text and f"RAISE_LORA_PATH={out}" in text
        assert "loss 1.2500  eval 1.4000  lr 1.00e-03" in text
        assert "torch 1.40 GiB" in text and "GPU   3.0 / 8.0 GiB" in text
        log = log_text(app)
        assert "checkpoint saved at step 2" in log and "▶ loading model: smollm2-135m-instruct" in log
        chart = app.query_one("#loss-chart")
        assert chart.train[-1] == (4, 1.25) and chart.eval == [(2, 1.9), (4, 1.4)]
        assert "Next: e evaluate   c chat   x export (zip, install, GGUF)   t train again" in text
        await pilot.press("e")  # the after-run keys open their screens (tests/test_tui_after_run.py has the rest)
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.results is not None)
        assert engine.evaluate_calls == [(out, "dataset.jsonl", EVAL_ROWS, False)]
        await pilot.press("escape", "x")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        assert "z  zip: write" in screen_text(app)
        assert f"zip: write {out}.zip" in str(app.screen.query_one(".keys", Static).render())
        await pilot.press("escape")
        assert app.training_result.output_dir == out


async def test_a_failed_run_shows_the_message_and_the_app_stays_usable(tmp_path):
    engine = FakeEngine(NO_GPU, run=failing_run)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.state == "failed" and not app.workers._workers)
        await pilot.pause()
        text = screen_text(app)
        assert "✘ Training failed: bitsandbytes sees no CUDA device" in text
        assert "hint: install a CUDA build of torch, or pick the cpu preset" in text
        assert text.count("✘ Training failed") == 1  # Failed event and raised error are shown once
        engine.run = crashing_run  # an exception without a Failed event is shown too, never raised
        await pilot.press("t")
        await wait_until(pilot, lambda: len(engine.train_calls) == 2 and app.training.state == "failed")
        await pilot.pause()
        assert "✘ Training failed: unexpected RuntimeError: something nobody expected" in screen_text(app)
        engine.run = stoppable_run
        await pilot.press("2", "t")
        await wait_until(pilot, lambda: app.training.step == 2)
        assert len(engine.train_calls) == 3 and "Training failed" not in screen_text(app)
        engine.stop_event.set()
        await wait_until(pilot, lambda: not app.training.running)


async def test_a_live_run_updates_then_the_stop_key_saves_and_says_stopped(tmp_path):
    engine = FakeEngine(NO_GPU, run=stoppable_run)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.check_action("stop", ()) is False  # no run: the stop key is hidden
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.step == 2)
        await pilot.pause()
        text = screen_text(app)
        assert "step 2/100" in text
        assert "loss 2.0000" in text and "1,000 tok/s" in text and "ETA 1m38s" in text
        assert app.query_one(ProgressBar).progress == 2 and app.query_one(ProgressBar).total == 100
        assert app.query_one("#loss-chart").train == [(1, 2.0), (2, 2.0)]
        assert app.check_action("stop", ()) is True and app.check_action("train", ()) is None
        await pilot.press("s")
        assert engine.stop_event.is_set()
        await wait_until(pilot, lambda: app.training.state == "stopped")
        await pilot.pause()
        text = screen_text(app)
        out = str(tmp_path / "adapter")
        assert "■ Stopped at step 2 of 100" in text
        assert f"Resumable checkpoint: {out}/checkpoints/checkpoint-2" in static_text(app, "#run-summary")
        assert "stop requested: the adapter and a resumable checkpoint are saved first" in log_text(app)


async def start_run(pilot, app, until_step: int) -> None:
    """`t` on a settled app, then wait until the run has logged `until_step`."""
    await settle(pilot)
    await pilot.press("t")
    await wait_until(pilot, lambda: app.training.step == until_step)


async def ask_to_quit(pilot, app) -> None:
    """`q` during a run: the app asks (stop, leave or keep watching) instead of quitting."""
    await pilot.press("q")
    await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))


async def test_quit_during_a_run_asks_then_stops_saves_and_exits(tmp_path):
    engine = FakeEngine(NO_GPU, run=stoppable_run)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot, app, until_step=2)
        await ask_to_quit(pilot, app)
        text = screen_text(app)
        assert "s  stop, save and quit" in text and "l  leave it running and quit" in text
        await pilot.press("n")  # keep watching
        await pilot.pause()
        assert app.is_running and not engine.stop_event.is_set()
        await ask_to_quit(pilot, app)
        await pilot.press("s")
        await wait_until(pilot, lambda: not app.is_running)
    assert engine.stop_event.is_set() and not app.leave_event.is_set()
    assert app.training_result is not None and app.training_result.stopped_early
    assert app.return_code == 0


async def test_quit_during_a_run_can_leave_it_running(tmp_path):
    """`l` stops following the run without stopping it: the engine is told to leave, never to stop."""
    left = threading.Event()

    def leavable_run(on_event, stop_event, output_dir):
        on_event(RunStarted(config={}, total_steps=100, train_rows=3, eval_rows=1, device="cpu", output_dir=output_dir))
        on_event(StepLogged(step=1, total_steps=100, epoch=0.01, loss=2.0, lr=1e-3, grad_norm=None,
                            tokens_per_s=1000.0, elapsed_s=1.0, eta_s=99.0))
        while not engine.train_calls[-1]["leave_event"].wait(0.01):
            assert not stop_event.is_set()
        left.set()
        return None

    engine = FakeEngine(NO_GPU, run=leavable_run)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot, app, until_step=1)
        await ask_to_quit(pilot, app)
        await pilot.press("l")
        await wait_until(pilot, lambda: not app.is_running)
    assert left.wait(5) and not engine.stop_event.is_set()


async def test_quit_without_a_run_exits_at_once(tmp_path):
    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running)


async def test_existing_output_offers_resume_or_overwrite(tmp_path):
    out = tmp_path / "adapter"
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")  # a complete checkpoint
    (out / "adapter_config.json").write_text("{}")
    (out / "adapter_model.safetensors").write_bytes(b"weights")
    engine = FakeEngine(NO_GPU)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        assert f"{out} already holds an adapter" in " ".join(str(w.render()) for w in app.screen.query(Static))
        text = screen_text(app)
        assert "r  resume from its last checkpoint" in text and "o  start over, replacing it" in text
        await pilot.press("escape")
        await pilot.pause()
        assert engine.train_calls == []
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("r")
        await wait_until(pilot, lambda: app.training.state == "finished")
        assert engine.train_calls[0]["resume"] is True and engine.train_calls[0]["overwrite"] is False
