"""After a run, in the TUI: evaluate (base vs adapter side by side), chat with both, export as a zip or install.

Pilot tests with the scripted engine (no torch) assert what a user sees and the files they get; the last test runs
the real engine on a tiny adapter trained here on the CPU.
"""
from __future__ import annotations

import threading
import zipfile

import pytest
from textual.widgets import Input, Static

from core.errors import InputError
from tests.tui_fakes import (FakeEngine, NO_GPU, adapter_run, chat_answers, log_text, make_app, screen_text, settle,
                             wait_until)
from tui.app import EVAL_ROWS
from tui.screens.chat import ChatScreen
from tui.screens.confirm import ChoiceScreen
from tui.screens.evaluate import EvaluateScreen
from tui.screens.export import InstallScreen

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a whole app: seconds each (make test-fast skips them)


async def finish_a_run(pilot) -> None:
    await settle(pilot)
    await pilot.press("t")
    await wait_until(pilot, lambda: pilot.app.training.state == "finished" and "Next:" in screen_text(pilot.app))


def shown(app, selector: str) -> str:
    """The text of one Static on the active screen, unwrapped."""
    return str(app.screen.query_one(selector, Static).render())


def in_log(app, text: str) -> bool:
    """`text` is in the log, however the log wrapped it (long paths wrap mid-word at 80 columns)."""
    return "".join(text.split()) in "".join(log_text(app).split())


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


# -- evaluate ---------------------------------------------------------------------------------------------
async def test_evaluate_view_shows_both_models_answers_and_scores_side_by_side(tmp_path):
    engine = FakeEngine(NO_GPU)
    engine.gate = threading.Event()
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        assert "e evaluate   c chat   x export (zip, install, GGUF)" in screen_text(app)  # the finish screen's keys
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.heading)
        text = screen_text(app)  # the busy state, while the models answer
        assert "evaluating 3 held-out rows of dataset.jsonl (the run's eval split)" in text
        assert "loading smollm2-135m-instruct and the adapter…" in text
        assert app.screen.check_action("run", ()) is None  # no second run while one is going
        engine.gate.set()
        await wait_until(pilot, lambda: app.screen.results is not None)
        adapter = str(tmp_path / "adapter")
        assert engine.evaluate_calls == [(adapter, "dataset.jsonl", EVAL_ROWS, False)]
        text = screen_text(app)
        assert "evaluating" not in text and "3 held-out rows of dataset.jsonl" in text
        # the scores, one column per model, base first
        head = line_with(text, "exact match")
        assert head.index("0/3 (0%)") < head.index("2/3 (67%)")
        assert line_with(text, "similarity").split()[-3:-1] == ["0.35", "0.99"]
        assert line_with(text, "eval loss").split()[-3:-1] == ["2.8412", "0.3127"]
        assert line_with(text, "base").index("base") < line_with(text, "base").index("adapter")
        # each row: prompt, reference, then the base answer on the left and the adapter's on the right
        assert "line 1  Analyser cet élément technique du domaine safety." in text
        assert "reference  L'entité appartient à la collection 'safety_rules' [un2]." in text
        verdicts = line_with(text, "✗ base")
        assert verdicts.index("✗ base") < verdicts.index("✓ adapter")
        answers = line_with(text, "Le contrôleur de freinage")
        assert answers.index("Le contrôleur de freinage") < answers.index("L'entité appartient à la collection")
        assert all(len(line) <= 80 for line in text.splitlines())
        # the last row is below the fold at 80×24: the keyboard scrolls to it
        assert "Which layer holds this component?" not in text
        await pilot.press("end")
        await pilot.pause()
        text = screen_text(app)
        assert "line 3  Which layer holds this component?" in text
        last = line_with(text, "This component is in the physical")
        assert last.index("This component is in the physical") < last.index("The logical architecture layer (LA).")
        assert "exact match" in text  # the scores stay in view
        await pilot.press("escape")
        assert not isinstance(app.screen, EvaluateScreen) and app.tabs.active == "training"


async def test_a_failing_evaluate_shows_its_message_and_the_app_stays_usable(tmp_path):
    engine = FakeEngine(NO_GPU)
    engine.eval_error = InputError("no chat rows to evaluate", hint="use --split all or another dataset")
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.error)
        text = screen_text(app)
        assert "✘ evaluation failed: no chat rows to evaluate" in text
        assert "hint: use --split all or another dataset" in text and "Traceback" not in text
        assert "exact match" not in text and "evaluating" not in text
        engine.eval_error = RuntimeError("CUDA error: device-side assert")  # unexpected errors are shown too
        await pilot.press("r")
        await wait_until(pilot, lambda: len(engine.evaluate_calls) == 2 and not app.screen.running)
        assert "✘ evaluation failed: RuntimeError: CUDA error: device-side assert" in screen_text(app)
        from core.runs.history import state_home  # a bug's traceback is kept where the screen says, for the report

        log = state_home() / "app-errors.log"
        assert "a bug in the trainer: its traceback is in" in screen_text(app)
        assert "RuntimeError: CUDA error: device-side assert" in log.read_text().splitlines()[-2]
        engine.eval_error = None  # r runs it again, and this time it works
        await pilot.press("r")
        await wait_until(pilot, lambda: app.screen.results is not None)
        assert "failed" not in screen_text(app) and "2/3 (67%)" in screen_text(app)
        await pilot.press("escape", "1")
        assert app.tabs.active == "overview"  # the app still answers its keys


async def test_closing_the_evaluate_view_stops_the_evaluation_at_its_next_step(tmp_path):
    engine = FakeEngine(NO_GPU)
    engine.gate = threading.Event()
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.heading)
        worker = next(w for w in app.workers if w.group == "evaluate")
        await pilot.press("escape")
        engine.gate.set()  # the engine reports its next step: the closed screen's worker stops it there
        await wait_until(pilot, lambda: worker.is_finished)
        assert engine.evaluations_done == 0 and not isinstance(app.screen, EvaluateScreen)
        await pilot.press("e")  # and a new one starts cleanly
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.results is not None)
        assert engine.evaluations_done == 1


async def test_evaluate_from_the_command_palette_uses_an_adapter_already_in_the_output_folder(tmp_path):
    engine = FakeEngine(NO_GPU)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.check_action("evaluate", ()) is False  # no adapter anywhere: the key is not offered
        (tmp_path / "adapter").mkdir()  # one from an earlier session
        (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
        assert app.check_action("evaluate", ()) is False  # a config without weights is not an adapter (core's rule)
        (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
        assert app.check_action("evaluate", ()) is True
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"evaluate the")
        await wait_until(pilot, lambda: "Evaluate the adapter" in screen_text(app))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen) and app.screen.results is not None)
        assert engine.evaluate_calls[0][0] == str((tmp_path / "adapter").resolve())
        assert "2/3 (67%)" in screen_text(app)


# -- chat -------------------------------------------------------------------------------------------------
async def test_chat_loads_once_then_shows_both_answers_side_by_side_and_keeps_the_prompts(tmp_path):
    engine = FakeEngine(NO_GPU)
    engine.gate = threading.Event()
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert "loading the base model and the adapter…" in screen_text(app)
        await pilot.press(*"hi", "enter")  # too early: the prompt stays in the field
        assert app.screen.query_one(Input).value == "hi" and not app.screen.exchanges
        engine.gate.set()
        await wait_until(pilot, lambda: app.screen.state == "ready")
        adapter = str(tmp_path / "adapter")
        assert shown(app, "#chat-status") == f"ready: base smollm2-135m-instruct · adapter {adapter}"
        await pilot.press("ctrl+u")
        for n, prompt in enumerate(["Which layer holds it?", "Quelle fonction ?"], 1):
            await pilot.press(*prompt, "enter")
            await wait_until(pilot, lambda: len(app.screen.exchanges) == n and app.screen.state == "ready")
        text = screen_text(app)
        base, tuned = chat_answers("Which layer holds it?")
        # (q, c, e, x typed in the prompt are text, not the app's keys)
        assert "1 › Which layer holds it?" in text and "2 › Quelle fonction ?" in text
        columns = line_with(text, "base model")
        assert columns.index("base model") < columns.index("adapter")
        first = line_with(text, base[:20])
        assert first.index(base[:20]) < first.index(tuned[:20])  # side by side: base left, adapter right
        assert engine.chat_calls == [("load", adapter), ("chat", adapter, "Which layer holds it?"),
                                     ("chat", adapter, "Quelle fonction ?")]  # loaded once for the session
        assert app.screen.query_one(Input).value == ""
        await pilot.press("up")  # the session's prompts come back with ↑
        assert app.screen.query_one(Input).value == "Quelle fonction ?"
        await pilot.press("up")
        assert app.screen.query_one(Input).value == "Which layer holds it?"
        await pilot.press("escape")
        await wait_until(pilot, lambda: engine.chat_closed == 1)  # closing frees the model
        assert not isinstance(app.screen, ChatScreen)


async def test_chat_shows_a_load_error_in_the_screen_and_can_try_again(tmp_path):
    engine = FakeEngine(NO_GPU)
    engine.chat_error = InputError("Qwen/Qwen2.5-1.5B-Instruct is not downloaded", hint="run once with a network")
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.state == "failed")
        text = screen_text(app)
        assert "✘ cannot load the model: Qwen/Qwen2.5-1.5B-Instruct is not downloaded" in text
        assert "hint: run once with a network" in text
        engine.chat_error = None
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.state == "ready")
        assert "ready: base smollm2-135m-instruct" in screen_text(app)
        engine.chat_error = RuntimeError("CUDA out of memory")  # an answer that fails is shown, the chat goes on
        await pilot.press(*"Which layer?", "enter")
        await wait_until(pilot, lambda: app.screen.state == "ready" and "no answer" in screen_text(app))
        assert "✘ no answer: RuntimeError: CUDA out of memory" in screen_text(app) and not app.screen.exchanges
        engine.chat_error = None
        await pilot.press(*"Which layer?", "enter")
        await wait_until(pilot, lambda: len(app.screen.exchanges) == 1)
        assert "1 › Which layer?" in screen_text(app) and "no answer" not in screen_text(app)


# -- export -----------------------------------------------------------------------------------------------
async def test_export_zip_writes_the_adapter_files_next_to_the_adapter(tmp_path):
    app = make_app(FakeEngine(NO_GPU, run=adapter_run), tmp_path)
    zip_file = tmp_path / "adapter.zip"
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        keys = shown(app, ".keys")
        assert f"z  zip: write {zip_file}" in keys and "i  install: copy it into GenAptitude's LoRA folder" in keys
        assert "z  zip: write" in screen_text(app)
        await pilot.press("z")
        await wait_until(pilot, lambda: in_log(app, f"export: wrote {zip_file}"))
        assert set(zipfile.ZipFile(zip_file).namelist()) == {
            "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json"}
        assert zipfile.ZipFile(zip_file).read("adapter/adapter_model.safetensors") == b"weights"


async def test_export_install_copies_into_the_lora_root_and_sets_the_env_once(tmp_path, monkeypatch):
    app = make_app(FakeEngine(NO_GPU, run=adapter_run), tmp_path)
    env = tmp_path / "genaptitude" / ".env"
    env.parent.mkdir()
    original = "# GenAptitude\nRAISE_MODEL=qwen\nRAISE_LORA_PATH=/old/one\nexport RAISE_LORA_PATH=/older\nPORT=8080\n"
    env.write_text(original)
    root = tmp_path / "lora"
    monkeypatch.setenv("HOME", str(tmp_path))  # so that the user can type ~/lora (and the test types less)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("x", "i")
        await wait_until(pilot, lambda: isinstance(app.screen, InstallScreen))
        text = screen_text(app)
        assert "~/genaptitude-llm/ai-assets/lora" in text  # the default, ready to accept or change
        assert "GenAptitude .env to set RAISE_LORA_PATH in" in text
        await pilot.press("escape")  # cancel does nothing
        assert not isinstance(app.screen, InstallScreen) and not root.exists()
        await pilot.press("x", "i")
        await wait_until(pilot, lambda: isinstance(app.screen, InstallScreen))
        await pilot.press("ctrl+u", *"~/lora", "tab", *"~/genaptitude/.env", "enter")
        dest = root / "adapter"
        await wait_until(pilot, lambda: in_log(app, f"export: installed {dest}"))
        backups = list(env.parent.glob(".env.bak-*"))
        assert in_log(app, f"export: ~/genaptitude/.env: RAISE_LORA_PATH={dest}")
        assert len(backups) == 1 and in_log(app, f"export: backup of the old .env: {backups[0]}")
    assert (dest / "adapter_model.safetensors").read_bytes() == b"weights" and not (dest / "checkpoints").exists()
    lines = env.read_text().splitlines()
    assert [line for line in lines if "RAISE_LORA_PATH" in line] == [f"RAISE_LORA_PATH={dest}"]
    assert lines[0] == "# GenAptitude" and "RAISE_MODEL=qwen" in lines and "PORT=8080" in lines
    assert backups[0].read_text() == original


async def test_export_gguf_for_raise_merges_writes_and_copies_with_its_progress_in_the_log(tiny_qwen_dir, tmp_path):
    """x, g: the GGUF dialog (type, RAISE .env), then the merge and each tenth of the tensors in the log, the two
    files beside the adapter and in RAISE's models folder, and the two settings to give RAISE."""
    import shutil

    from tests.test_gguf import _lora
    from tests.tui_fakes import happy_run
    from tui.screens.export import GgufScreen

    trained = _lora(tiny_qwen_dir, tmp_path / "trained", std=0.05)  # a real adapter on a real (tiny) Qwen2

    def run(on_event, stop_event, output_dir):
        shutil.copytree(trained, output_dir, dirs_exist_ok=True)
        return happy_run(on_event, stop_event, output_dir)

    env = tmp_path / "raise" / ".env"
    env.parent.mkdir()
    env.write_text("PATH_RAISE_ASSET=assets\n")
    app = make_app(FakeEngine(NO_GPU, run=run), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        assert "g  GGUF for RAISE: the model merged into one file (llama.cpp, Ollama)" in shown(app, ".keys")
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, GgufScreen))
        text = screen_text(app)
        assert "type: q8_0, q5_1, q4_1, q4_0, f16, bf16" in text and "RAISE .env" in text
        assert app.screen.query_one("#gguf-type", Input).value == "q8_0"  # the default, ready to accept
        await pilot.press("escape")  # cancel writes nothing
        assert not isinstance(app.screen, GgufScreen) and not list(tmp_path.glob("*.gguf"))
        await pilot.press("x", "g")
        await wait_until(pilot, lambda: isinstance(app.screen, GgufScreen))
        await pilot.press("tab", *str(env), "enter")
        await wait_until(pilot, lambda: "export: " in log_text(app) or "failed" in log_text(app), timeout=300)
        assert "failed" not in log_text(app), log_text(app)
        assert in_log(app, "gguf: [merging] adapter into its base")
        assert in_log(app, "gguf: 1/26 tensors written (token_embd.weight F16)")
        assert in_log(app, "gguf: 26/26 tensors written (output_norm.weight F32)")
        assert in_log(app, f"export: wrote {tmp_path / 'adapter-q8_0.gguf'}")
        assert in_log(app, "rust_model_file = adapter-q8_0.gguf, rust_tokenizer_file = adapter-q8_0.tokenizer.json")
    models = env.parent / "assets" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["adapter-q8_0.gguf", "adapter-q8_0.tokenizer.json"]
    assert (models / "adapter-q8_0.gguf").read_bytes()[:4] == b"GGUF"


async def test_export_of_a_folder_that_is_not_an_adapter_says_so(tmp_path):
    app = make_app(FakeEngine(NO_GPU), tmp_path)  # the fake run writes no adapter files
    async with app.run_test(size=(80, 24)) as pilot:
        await finish_a_run(pilot)
        await pilot.press("x", "z")
        await wait_until(pilot, lambda: "export (zip) failed" in log_text(app))
        assert "is not an adapter folder" in log_text(app) and "Traceback" not in screen_text(app)
        assert not (tmp_path / "adapter.zip").exists()
        await pilot.press("2")
        assert app.tabs.active == "preset"


# -- the real engine --------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_real_engine_evaluates_and_chats_with_a_tiny_adapter(tiny_model_dir, small_dataset, tmp_path, capsys):
    """A tiny adapter trained here on the CPU; the evaluate view scores the same held-out rows, with the same
    numbers, as `genaptitude-trainer evaluate --compare`, and the chat's base answer is the plain base model's."""
    import json

    from core.adapter.evaluate import generate_replies, held_out, load_for_eval
    from core.cli import main as cli
    from core.presets import config_for
    from core.train.engine import train
    from tui.bridge import ProcessEngine

    out = tmp_path / "adapter"
    # 20 steps at a high rate (about a second on 2 CPU cores): enough that the tiny model's greedy answers change
    train(config_for("cpu", model=str(tiny_model_dir), max_steps=20, batch_size=4, lr=3e-3), str(small_dataset),
          str(out))
    engine = ProcessEngine()  # the app's default engine: evaluate and chat are RealEngine's, in this process
    app = make_app(engine, tmp_path, dataset=str(small_dataset), output=str(out))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.dataset.report is not None, timeout=30)
        await app.run_action("evaluate")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluateScreen)
                         and (app.screen.results is not None or app.screen.error), timeout=120)
        assert not app.screen.error, app.screen.error
        results = app.screen.results
        text = screen_text(app)
        rows = held_out(str(small_dataset), str(out))
        assert rows.split == "eval" and len(rows.examples) == 2
        assert f"2 held-out rows of {small_dataset} (the run's eval split), base model {tiny_model_dir}" in \
            shown(app, "#eval-head").replace("\n", " ")
        assert [r.label for r in results] == ["base", "adapter"]
        assert [[x.line for x in r.rows] for r in results] == [[e.line for e in rows.examples]] * 2
        for r in results:
            assert r.eval_loss is not None and f"{r.eval_loss:.4f}" in line_with(text, "eval loss")
        assert results[0].eval_loss != results[1].eval_loss  # the adapter changed the weights
        await pilot.press("escape")

        await app.run_action("chat")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.state != "loading",
                         timeout=60)
        assert app.screen.state == "ready", screen_text(app)
        instruction = json.loads((out / "run.json").read_text(encoding="utf-8"))["prompt_layout"]["instruction"]
        assert instruction and (f"your prompt is the input, the run's instruction «{instruction}» as the system turn"
                                in " ".join(shown(app, "#chat-status").split()))  # as the run laid out its rows
        await pilot.press(*"Which layer?", "enter")
        await wait_until(pilot, lambda: app.screen.exchanges and app.screen.state == "ready", timeout=60)
        prompt, base, tuned = app.screen.exchanges[0]
        assert tuned and tuned != base  # the adapter answers differently from the same weights without it
        text = screen_text(app)
        assert "1 › Which layer?" in text and tuned[:30] in text
        loaded = engine._chat
        await pilot.press(*"And this one?", "enter")
        await wait_until(pilot, lambda: len(app.screen.exchanges) == 2 and app.screen.state == "ready", timeout=60)
        assert engine._chat is loaded  # kept loaded between prompts
        await pilot.press("escape")
        await wait_until(pilot, lambda: engine._chat is None, timeout=10)

    cli(["evaluate", "--adapter", str(out), "--dataset", str(small_dataset), "--compare", "--json"])
    from_cli = json.loads(capsys.readouterr().out)["results"]
    assert [r["eval_loss"] for r in from_cli] == [r.eval_loss for r in results]
    assert [[x["answer"] for x in r["rows"]] for r in from_cli] == [[x.answer for x in r.rows] for r in results]
    tok, plain, _ = load_for_eval(str(tiny_model_dir), None)
    laid_out = [{"role": "system", "content": instruction}, {"role": "user", "content": "Which layer?"}]
    assert generate_replies(tok, plain, [laid_out], 128)[0] == base
