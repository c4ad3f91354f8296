"""Pilot tests of the TUI with a scripted engine: what a user sees after each key, no torch involved."""
from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, OptionList

from tests.tui_fakes import (BAD_LINES, FakeEngine, NO_GPU, RTX_3060, RTX_SAMPLES, log_text, make_app, screen_text,
                             settle, static_text, wait_until)
from tui.app import TrainerApp
from tui.bridge import RealEngine
from tui.screens.confirm import ConfirmScreen
from tui.screens.preview import TRAINED, PreviewScreen

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)


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


@pytest.mark.parametrize("amx", [True, False])
async def test_preset_tab_says_the_precision_the_cpu_run_will_train_in(tmp_path, amx):
    """The cpu preset trains bf16 on a CPU with AMX units (core.train.resolve.precision, as the run decides): the tab
    said fp32 there. Its RAM estimate is the bf16 run's too (half the base weights' bytes)."""
    from dataclasses import replace

    app = make_app(FakeEngine(replace(NO_GPU, cpu_amx_bf16=amx)), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        about = static_text(app, "#preset-about")
        if amx:
            assert "here: bf16 on this CPU's AMX units: base weights in bf16, bf16 autocast, LoRA weights in fp32" \
                in about
        else:
            assert "here: fp32" in about and "bf16" not in about.split("here:")[1]
        assert app.presets.resolved().config.compute_dtype == ("bfloat16" if amx else "float32")


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

    from core import startup

    # This pytest process started long ago: count from now, as a freshly launched app would from its own start.
    monkeypatch.setattr(startup, "_IMPORTED_AT", time.time())
    monkeypatch.delenv(startup.ENV, raising=False)
    app = TrainerApp(FakeEngine(NO_GPU), output=str(tmp_path / "a"), refresh_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.startup_seconds is not None and 0 < app.startup_seconds < 30
        assert app.sub_title == f"ready in {app.startup_seconds:.2f} s"
        await pilot.press("4")
        assert "start-up: first screen painted" in log_text(app)  # also written to the log


async def test_the_first_paint_holds_only_the_overview_and_the_other_tabs_follow(tmp_path):
    """First paint under half a second: tabs 2-4 get their panels once the first screen is painted (composing and
    styling them was a third of the start-up); the hardware probe and the dataset's check start after that, and
    keys other than quit wait for the panels."""
    seen = {}

    class Watched(TrainerApp):
        async def on_ready(self) -> None:
            seen["at first paint"] = [p.is_mounted for p in (self.presets, self.dataset, self.training)]
            seen["probed"] = self.hardware is not None
            seen["keys"] = [self.check_action(a, ()) for a in ("show_tab", "train", "quit")]
            await super().on_ready()

    app = Watched(FakeEngine(NO_GPU), output=str(tmp_path / "a"), refresh_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # a key typed ahead of the panels (only quit works until they are there)
        assert seen == {"at first paint": [False, False, False], "probed": False, "keys": [False, False, True]}
        assert all(p.is_mounted for p in (app.presets, app.dataset, app.training))
        await pilot.press("2")
        assert "suggested: cpu" in screen_text(app)
        await pilot.press("3")
        assert "rows" in screen_text(app)


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
