"""Pilot tests of the TUI with a scripted engine: what a user sees after each key, no torch involved."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList, ProgressBar, Static

from tests.tui_fakes import (BAD_LINES, NO_GPU, RTX_3060, RTX_SAMPLES, FakeEngine, crashing_run, failing_run,
                             log_text, screen_text, settle, static_text, stoppable_run, wait_until)
from core.events import RunStarted, StepLogged
from tui.app import EVAL_ROWS, TrainerApp
from tui.bridge import RealEngine
from tui.screens.confirm import ChoiceScreen, ConfirmScreen
from tui.screens.evaluate import EvaluateScreen
from tui.screens.preview import TRAINED, PreviewScreen

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)


@pytest.fixture
def anyio_backend():
    return "asyncio"


def make_app(engine: FakeEngine, tmp_path: Path, **kw) -> TrainerApp:
    kw.setdefault("output", str(tmp_path / "adapter"))
    app = TrainerApp(engine, refresh_interval=None, stats_delay=0, show_startup_time=False, **kw)
    app.animation_level = "none"  # the tab underline's slide only slows the pilot down
    return app


# -- the first screen -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_first_screen_shows_no_gpu_the_suggested_cpu_preset_and_a_data_sample(tmp_path, size):
    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        assert app.tabs.active == "overview"  # nothing pressed: this is what the user sees first
        text = screen_text(app)
        # the hardware panel's no-GPU state
        assert "No NVIDIA GPU available" in text and "training runs on the CPU" in text
        assert "NVIDIA driver library (libnvidia-ml) not found" in text
        # the suggested preset, with its reason and what it will run
        preset_line = next(line for line in text.splitlines() if "Preset cpu" in line)
        assert "Preset cpu  ★ suggested" in preset_line
        assert "why: no NVIDIA GPU; training runs on the CPU with the bundled small model" in text
        assert "smollm2-135m-instruct, 1 epoch" in text and "RAM ≈" in text
        # a sample of the data: format, row count, the first rows as instruction → answer
        assert "Data dataset.jsonl, 3 rows, GenAptitude / Alpaca format" in text
        first = next(line for line in text.splitlines() if "Analyser cet élément technique" in line)
        assert "→ L'entité appartient" in first
        assert "Résumer la fonction. → La fonction contrôle l'attitude." in text
        assert "Which layer holds this component? → The logical architecture layer (LA)." in text
        assert "{" not in first  # the instruction only, not the JSON input attached to it
        # all of it fits: nothing is scrolled out of sight, no row wraps past the screen
        assert app.overview.max_scroll_y == 0
        assert all(len(line) <= size[0] for line in text.splitlines())


async def test_first_screen_with_a_gpu_shows_its_name_vram_and_suggestion(tmp_path):
    app = make_app(FakeEngine(RTX_3060, RTX_SAMPLES), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: "37%" in screen_text(app))
        text = screen_text(app)
        assert "NVIDIA GeForce RTX 3060" in text and "3.0 / 8.0 GiB (38%)" in text
        assert "Preset 8gb  ★ suggested" in text and "has bf16 but only 6.5" in text
        assert "Analyser cet élément technique" in text
        assert app.overview.max_scroll_y == 0


async def test_first_screen_names_a_chosen_preset_and_a_bad_dataset(tmp_path):
    app = make_app(FakeEngine(NO_GPU, lines=BAD_LINES), tmp_path, preset="t4-fp16")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "Preset t4-fp16  (chosen; change it on tab 2)" in text
        assert "suggested: cpu" in text
        assert "⚠ preset t4-fp16 needs an NVIDIA GPU and none was found" in text
        assert "Data ✘ dataset.jsonl cannot be used as it is" in text
        assert "dataset.jsonl:3:" in text and "k to skip the bad rows" in text
        await pilot.press("k")
        await wait_until(pilot, lambda: app.overview.dataset_shown is app.dataset.report is not None)
        await pilot.press("1")
        text = screen_text(app)
        assert "3 rows" in text and "⚠ 2 invalid row(s) skipped (line 3, 5)" in text
        assert "Which layer holds this component?" in text


# -- hardware and presets ---------------------------------------------------------------------------------
async def test_no_gpu_says_so_suggests_cpu_and_presets_are_picked_with_keys(tmp_path):
    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.presets.preset == "cpu"
        text = screen_text(app)
        assert "No NVIDIA GPU available" in text
        assert "libnvidia-ml) not found: no NVIDIA GPU or driver on this machine" in text
        assert "training runs on the CPU" in text
        await pilot.press("2")
        text = screen_text(app)
        assert "★ suggested" in text and "suggested: cpu" in text
        assert "NVIDIA driver library (libnvidia-ml) not found" in static_text(app, "#suggestion")  # the reason
        # pick another preset with the keyboard: its values fill the fields
        assert app.focused is app.query_one("#preset-list", OptionList)
        await pilot.press("up")  # cpu is last; t4-fp32 is above it
        assert app.presets.preset == "t4-fp32"
        assert app.query_one("#field-batch_size", Input).value == "4"
        assert app.query_one("#field-lora_r", Input).value == "16"
        assert "t4-fp32: The old script's safe mode" in screen_text(app)
        assert "needs an NVIDIA GPU and none was found" in screen_text(app)  # warned before anything runs


async def test_gpu_report_shows_name_bar_util_and_driver(tmp_path):
    app = make_app(FakeEngine(RTX_3060, RTX_SAMPLES), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.presets.preset == "8gb"  # bf16 card with 6.5 GiB free
        await pilot.press("1")
        await wait_until(pilot, lambda: "37%" in screen_text(app))
        text = screen_text(app)
        assert "NVIDIA GeForce RTX 3060" in text
        assert "█████████░░░" in text and "3.0 / 8.0 GiB (38%)" in text  # bar from the live sample
        assert "util  37%" in text and "temp 54 °C" in text
        assert "compute capability 8.6 · bf16 yes" in text
        assert "Driver 550.54.14 · CUDA driver 12.4" in text


async def test_invalid_values_show_their_message_next_to_the_field(tmp_path):
    engine = FakeEngine(NO_GPU)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        field = app.query_one("#field-batch_size", Input)
        field.focus()
        await pilot.press("end", "backspace", "0")  # type over the preset's 8
        assert field.value == "0"
        assert static_text(app, "#msg-batch_size") == "batch size must be ≥ 1 (got 0)"
        assert field.has_class("-invalid")
        assert app.presets.config is None
        row = next(line for line in screen_text(app).splitlines() if "batch size" in line)
        assert "batch size must be ≥ 1 (got 0)" in row  # on the same line as the field

        await pilot.press("backspace", "x")
        assert static_text(app, "#msg-batch_size") == "must be a whole number"
        await pilot.press("escape", "3")  # leave the field: keys are the app's again
        assert field.value == "x" and app.tabs.active == "dataset"
        app.query_one("#field-lr", Input).value = "3"
        await pilot.pause()
        assert "learning rate 3.0 is out of range" in static_text(app, "#msg-lr")

        app.query_one("#preset-list").focus()
        await pilot.press("t")
        await pilot.pause()
        assert engine.train_calls == []  # refused: nothing starts with bad values
        assert "fix the values marked in red first" in " ".join(str(n.message) for n in app._notifications)

        field.value = "2"
        app.query_one("#field-lr", Input).value = "5e-4"
        await pilot.pause()
        assert static_text(app, "#msg-batch_size") == "" and app.presets.config is not None
        assert app.presets.config.batch_size == 2 and app.presets.config.lr == 5e-4
        assert "effective batch 2 (2 × 1)" in static_text(app, "#estimate")


async def test_estimate_over_free_vram_asks_before_starting(tmp_path):
    engine = FakeEngine(RTX_3060, RTX_SAMPLES)
    app = make_app(engine, tmp_path, preset="modern-bf16")  # 32k-token micro-batches: 9 GiB in the fake
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "micro-batches ≤32,768 tokens (≤256 rows) × 1 per update" in static_text(app, "#estimate")
        assert "VRAM estimate ≈ 9.0 GiB" in static_text(app, "#estimate")
        assert "needs ≈ 9.0 GiB but NVIDIA GeForce RTX 3060 has 6.5 GiB free" in static_text(app, "#estimate")
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "needs ≈ 9.0 GiB" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert engine.train_calls == [] and not isinstance(app.screen, ConfirmScreen)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.training.state == "finished")
        assert engine.train_calls[0]["config"].preset == "modern-bf16"


# -- dataset ----------------------------------------------------------------------------------------------
async def test_bad_dataset_shows_the_lines_and_can_skip_them(tmp_path):
    engine = FakeEngine(NO_GPU, lines=BAD_LINES)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        text = screen_text(app)
        assert "dataset.jsonl cannot be used as it is" in text
        assert "dataset.jsonl:3:" in text and "dataset.jsonl:5:" in text  # each bad line, by number
        assert app.dataset.error is not None and app.query_one(DataTable).display is False

        await pilot.press("t")  # refused: the dataset has problems
        await pilot.pause()
        assert engine.train_calls == []

        await pilot.press("k")
        await wait_until(pilot, lambda: app.dataset.report is not None)
        text = screen_text(app)
        assert "skipped 2 invalid row(s) (line 3, 5)" in text
        assert app.query_one(DataTable).row_count == 3
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.state == "finished")
        assert engine.train_calls[0]["skip_invalid"] is True


async def test_dataset_tab_and_a_sample_as_the_model_sees_it(tmp_path):
    engine = FakeEngine(NO_GPU)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        text = screen_text(app)
        assert "format GenAptitude / Alpaca (instruction, input, output)  rows 3" in text
        assert "tokens (smollm2-135m-instruct, max length 512) min 41 · median 58 · p95 73 · max 75" in text
        assert app.query_one(DataTable).row_count == 3
        assert "Analyser cet élément technique" in text and "L'entité appartient" in text
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen) and app.screen.rendered is not None)
        assert engine.preview_calls == [("smollm2-135m-instruct", 2, 512)]  # second row, cpu preset's model
        text = screen_text(app)
        assert "58 tokens, 17 trained" in text
        assert "trained tokens carry the loss" in text  # the legend
        assert "<|im_start|>assistant" in text and "'safety_rules' [un2].<|im_end|>" in text
        body = app.screen.body
        trained = [body.plain[s.start:s.end] for s in body.spans if s.style == TRAINED]
        assert trained == ["L'entité appartient à la collection 'safety_rules' [un2].<|im_end|>"]
        await pilot.press("escape")
        assert not isinstance(app.screen, PreviewScreen)


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
        assert "Next: e evaluate   c chat   x export (zip or install)   t train again" in text
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


async def test_command_palette_uses_a_preset(tmp_path):
    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"t4-fp16")
        await wait_until(pilot, lambda: "Use preset t4-fp16" in screen_text(app))
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.presets.preset == "t4-fp16")
        assert app.query_one("#field-max_length", Input).value == "1024"


async def test_the_palette_offers_each_key_with_its_help_and_one_quit_that_asks_first(tmp_path):
    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"quit")
        await wait_until(pilot, lambda: "asks first when a run is going (q)" in screen_text(app))
        assert "as soon as possible" not in screen_text(app)  # Textual's own Quit gave way to the app's
        await pilot.press(*(["backspace"] * 4), *"stop")
        await wait_until(pilot, lambda: "save the adapter and a resumable checkpoint (s)" in screen_text(app))
        await pilot.press(*(["backspace"] * 4), *"theme")  # Textual's system commands are still there
        await wait_until(pilot, lambda: "Change the current theme" in screen_text(app))


async def test_startup_time_is_measured_and_shown(tmp_path, monkeypatch):
    import time

    import tui._start_time as start_time

    # This pytest process started long ago: count from now, as a freshly launched app would from its own start.
    monkeypatch.setattr(start_time, "PROCESS_START", time.monotonic())
    app = TrainerApp(FakeEngine(NO_GPU), output=str(tmp_path / "a"), refresh_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.startup_seconds is not None and 0 < app.startup_seconds < 30
        assert app.sub_title == f"ready in {app.startup_seconds:.2f} s"
        await pilot.press("4")
        assert "start-up: first screen painted" in log_text(app)  # also written to the log


async def test_real_engine_missing_dataset_is_explained(tmp_path):
    """The real seam, without torch: NVML probe and the real dataset reader on a file that is not there."""
    app = make_app(RealEngine(), tmp_path, dataset=str(tmp_path / "nope.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.action_show_tab("dataset")
        await pilot.pause()
        assert f"{tmp_path / 'nope.jsonl'}: no such file" in static_text(app, "#dataset-error-text")
        assert app.dataset.error is not None and app.is_running


async def test_a_failing_hardware_probe_is_shown_and_the_rest_works(tmp_path):
    engine = FakeEngine(NO_GPU)
    engine.probe = lambda: 1 / 0
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "Hardware check failed" in static_text(app, "#hw-text"))
        assert "ZeroDivisionError" in static_text(app, "#hw-text")
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.state == "finished")
