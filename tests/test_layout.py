"""Prompts as RAISE writes them (core/data/layout.py): an instruction/input row's instruction is the system turn and
its input the user turn, in what `check` prints, the preview, the trained tokens, the TUI's dataset tab, run.json,
`evaluate` and chat; `--instruction-turn user` keeps the earlier layout; a row's own `system` field wins; a template
without a system role gets the user turn."""
from __future__ import annotations

import json

import pytest

from core.data.dataset import parse_lines
from core.data.layout import instruction_turn_for, lay_out, template_has_system
from core.presets import BUNDLED_MODEL, config_changes, config_for

ROW = {"instruction": "Analyser cet élément technique du domaine safety.",
       "input": "{\"id\": \"1\", \"name\": \"Frein\"}", "output": "L'entité appartient à la collection 'safety_rules'."}
QUESTION = {"instruction": "Résumer la fonction.", "input": "", "output": "La fonction contrôle l'attitude."}
OWN_SYSTEM = {**ROW, "system": "Réponds en français."}


def jsonl(*rows) -> bytes:
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n").encode()


def write(tmp_path, *rows):
    path = tmp_path / "dataset.jsonl"
    path.write_bytes(jsonl(*rows))
    return path


def check_output(capsys, *argv) -> str:
    from core.cli import main

    assert main(["check", *map(str, argv)]) == 0
    return capsys.readouterr().out


# -- check: what a user runs first ------------------------------------------------------------------------------
def test_check_shows_the_instruction_in_the_system_turn_and_the_loss_on_the_answer_only(smollm2, tmp_path, capsys):
    out = check_output(capsys, write(tmp_path, ROW, QUESTION))
    assert ("  prompts: instruction → system turn, input → user turn, as RAISE prompts (empty input: instruction → "
            "user turn); --instruction-turn user to change") in out
    seen = next(line for line in out.splitlines() if "as the model sees it:" in line)
    assert seen.endswith("as the model sees it: <|im_start|>system\\nAnalyser cet élément technique du domaine "
                         "safety.<|im_end|>\\n<|im_start|>user\\n{\"id\": \"1\", \"name\": \"Frein\"}<|im_end|>\\n"
                         "<|im_start|>assistant\\nL'entité appartient à la collection 'safety_rules'.<|im_end|>\\n")
    assert "You are a helpful AI assistant" not in out  # the instruction replaced the template's default
    assert "    loss on:              L'entité appartient à la collection 'safety_rules'.<|im_end|>\\n" in out


def test_check_with_instruction_turn_user_shows_the_earlier_layout(smollm2, tmp_path, capsys):
    out = check_output(capsys, write(tmp_path, ROW), "--instruction-turn", "user")
    assert ("  prompts: instruction + input → user turn, under the template's default system prompt; "
            "--instruction-turn system to change") in out
    assert ("as the model sees it: <|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
            "Hugging Face<|im_end|>\\n<|im_start|>user\\nAnalyser cet élément technique du domaine safety.\\n\\n"
            "{\"id\": \"1\", \"name\": \"Frein\"}<|im_end|>\\n<|im_start|>assistant\\n") in out


def test_check_of_chat_rows_says_nothing_about_the_layout(tmp_path, capsys):
    path = write(tmp_path, {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]})
    assert "prompts:" not in check_output(capsys, path, "--no-tokens")


# -- the preview and the trained tokens -------------------------------------------------------------------------
@pytest.mark.parametrize("turn, prompt", [
    ("system", "<|im_start|>system\nAnalyser cet élément technique du domaine safety.<|im_end|>\n<|im_start|>user\n"
               "{\"id\": \"1\", \"name\": \"Frein\"}<|im_end|>\n<|im_start|>assistant\n"),
    ("user", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
             "<|im_start|>user\nAnalyser cet élément technique du domaine safety.\n\n{\"id\": \"1\", \"name\": "
             "\"Frein\"}<|im_end|>\n<|im_start|>assistant\n")])
def test_the_tui_preview_renders_the_layout_and_trains_only_the_answer(smollm2, turn, prompt):
    from tui.bridge import RealEngine

    example = parse_lines(jsonl(ROW)).examples[0]  # read as the TUI reads it; the preview lays it out as asked
    rendered = RealEngine().preview(BUNDLED_MODEL, example, 512, "keep-answer", turn)
    assert rendered.segments == [(prompt, False), (ROW["output"] + "<|im_end|>\n", True)]


def test_the_token_labels_are_the_answer_and_its_end_of_turn_only(smollm2):
    from core.data.render import features

    for example in parse_lines(jsonl(ROW, QUESTION, OWN_SYSTEM)).examples:
        f = features(smollm2, example, 512)
        trained = smollm2.decode([t for t in f.labels if t != -100])
        assert trained == example.messages[-1]["content"] + "<|im_end|>\n"
        assert smollm2.decode(f.input_ids).count(example.raw["instruction"]) == 1  # the instruction is seen once


def test_a_rows_own_system_field_wins_and_the_instruction_joins_the_input(smollm2):
    from core.data.render import render_example

    for turn in ("system", "user"):
        example = parse_lines(jsonl(OWN_SYSTEM), instruction_turn=turn).examples[0]
        text = "".join(t for t, _ in render_example(smollm2, example, 512).segments)
        assert text.startswith("<|im_start|>system\nRéponds en français.<|im_end|>\n<|im_start|>user\nAnalyser cet "
                               "élément technique du domaine safety.\n\n{\"id\": \"1\"")


# -- a template without a system role ---------------------------------------------------------------------------
REFUSES_SYSTEM = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                  "{% endif %}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
                  "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                  "{% endif %}")
DROPS_SYSTEM = ("{% for m in messages %}{% if m['role'] != 'system' %}{{ '<|im_start|>' + m['role'] + '\n' + "
                "m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.mark.parametrize("template", [REFUSES_SYSTEM, DROPS_SYSTEM], ids=["refuses", "drops"])
def test_a_template_without_a_system_role_gets_the_instruction_in_the_user_turn(tiny_tokenizer, template):
    import copy

    from core.data.render import render_example

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = template
    assert not template_has_system(tok) and template_has_system(tiny_tokenizer)
    assert instruction_turn_for(tok, "system") == "user" and instruction_turn_for(tiny_tokenizer, "system") == "system"
    example = lay_out(parse_lines(jsonl(ROW)).examples, instruction_turn_for(tok, "system"))[0]
    text = "".join(t for t, _ in render_example(tok, example, 512).segments)
    assert text.startswith("<|im_start|>user\nAnalyser cet élément technique du domaine safety.\n\n{")


def test_check_says_when_the_template_overrode_the_setting():
    from core.data.check import render_check

    out = render_check({"path": "d.jsonl", "rows": 1, "format_label": "GenAptitude", "blank_lines": 0, "skipped": [],
                        "tokens": None, "instruction_turn": "user", "instruction_turn_setting": "system"})
    assert ("prompts: instruction + input → user turn, under the template's default system prompt (instruction "
            "turn system asked, but this model's chat template has no system role)") in out


# -- resuming --------------------------------------------------------------------------------------------------
def test_a_checkpoint_from_before_the_setting_resumed_says_the_layout_changes():
    old = config_for("cpu").to_dict()
    del old["instruction_turn"]  # a checkpoint written before the setting: instruction and input in the user turn
    assert config_changes(old, config_for("cpu")) == ["instruction_turn 'user' → 'system'"]
    assert config_changes(old, config_for("cpu", instruction_turn="user")) == []
    assert config_changes({}, config_for("cpu")) == []  # nothing known about the checkpoint: nothing said


def test_the_train_flag_is_listed_with_its_choices(capsys):
    from core.cli import build_parser

    args = build_parser().parse_args(["train", "--instruction-turn", "user"])
    assert args.instruction_turn == "user"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--instruction-turn", "assistant"])
    assert "--instruction-turn: invalid choice: 'assistant' (choose from 'system', 'user')" in capsys.readouterr().err


# -- the TUI's dataset tab -------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_the_dataset_tab_says_which_layout_applies_and_follows_the_setting(tmp_path):
    from tests.tui_fakes import NO_GPU, FakeEngine, make_app, settle, static_text, wait_until

    class Engine(FakeEngine):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.turns: list[str] = []

        def length_stats(self, model, examples, max_length, instruction_turn="system"):
            self.turns.append(instruction_turn)
            return super().length_stats(model, examples, max_length)

    engine = Engine(NO_GPU)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await wait_until(pilot, lambda: "prompts" in static_text(app, "#dataset-layout"))
        assert layout_line(app) == (
            "prompts instruction → system turn, input → user turn, as RAISE prompts (empty input: instruction → "
            "user turn)")
        await pilot.press("2")
        field = app.query_one("#field-instruction_turn")
        assert field.value == "system"
        field.value = "user"
        await wait_until(pilot, lambda: "user turn, under" in static_text(app, "#dataset-layout"))
        assert layout_line(app) == (
            "prompts instruction + input → user turn, under the template's default system prompt")
        await wait_until(pilot, lambda: engine.turns[-1:] == ["user"])  # token lengths measured in that layout
        assert app.presets.config.instruction_turn == "user"


def layout_line(app) -> str:
    """The dataset tab's prompt-layout line, its wrapping undone."""
    from tests.tui_fakes import static_text

    return " ".join(static_text(app, "#dataset-layout").split())


@pytest.mark.anyio
async def test_the_dataset_tab_says_when_the_models_template_has_no_system_role(tmp_path):
    from tests.tui_fakes import NO_GPU, FakeEngine, make_app, settle, static_text, wait_until

    class NoSystemRole(FakeEngine):
        def instruction_turn(self, model, setting):
            return "user"

    app = make_app(NoSystemRole(NO_GPU), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await wait_until(pilot, lambda: "no system role" in static_text(app, "#dataset-layout"))
        assert layout_line(app) == (
            "prompts instruction + input → user turn, under the template's default system prompt (instruction turn "
            "system asked, but this model's chat template has no system role)")


# -- a real run: run.json, evaluate and chat ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_model_dir, small_dataset, tmp_path_factory):
    from core import events as ev
    from tests.tinymodels import train_tiny

    path, events = train_tiny(tiny_model_dir, small_dataset, tmp_path_factory.mktemp("run") / "a", max_steps=2,
                              score_rows=2)
    logs = [e.message for e in events if isinstance(e, ev.LogLine)]
    return path, logs


@pytest.mark.slow
def test_run_json_records_the_layout_and_the_log_says_it(trained, small_dataset):
    from collections import Counter

    path, logs = trained
    record = json.loads((path / "run.json").read_text(encoding="utf-8"))
    assert record["config"]["instruction_turn"] == "system"
    rows = [json.loads(line) for line in small_dataset.read_text(encoding="utf-8").splitlines()]
    common, n = Counter(r["instruction"] for r in rows).most_common(1)[0]
    assert record["prompt_layout"] == {"instruction_turn": "system", "setting": "system", "instruction": common,
                                       "instruction_rows": n}
    assert ("prompts: instruction → system turn, input → user turn, as RAISE prompts (empty input: instruction → "
            "user turn)") in logs


@pytest.mark.slow
def test_evaluate_and_chat_prompt_as_the_run_trained(trained, small_dataset, tmp_path):
    import shutil

    from core.adapter.evaluate import Chat, Fitting, held_out, prompt_of

    adapter, _ = trained
    rows = held_out(str(small_dataset), str(adapter))
    assert rows.split == "eval" and rows.examples
    fitting = Fitting.of(str(adapter))
    chat = Chat(str(adapter))
    for example in rows.examples:
        prompt = prompt_of(chat.tok, example, fitting)
        assert prompt == [{"role": "system", "content": example.raw["instruction"]},
                          {"role": "user", "content": example.raw["input"]}]
    assert chat.prompt_messages("{\"id\": \"2\"}") == [{"role": "system", "content": fitting.instruction},
                                                       {"role": "user", "content": "{\"id\": \"2\"}"}]

    old = tmp_path / "old"  # an adapter trained before the setting: its run.json says nothing of the layout
    shutil.copytree(adapter, old)
    record = json.loads((old / "run.json").read_text(encoding="utf-8"))
    del record["prompt_layout"], record["config"]["instruction_turn"]
    (old / "run.json").write_text(json.dumps(record), encoding="utf-8")
    example = held_out(str(small_dataset), str(old)).examples[0]
    assert prompt_of(chat.tok, example, Fitting.of(str(old))) == [
        {"role": "user", "content": example.raw["instruction"] + "\n\n" + example.raw["input"]}]
