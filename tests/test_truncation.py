"""Rows longer than max length (`--truncation`): on a long-document export no trained row loses an answer token, the
mask covers exactly the answer, the input is cut in its middle with a visible marker, `check` and the TUI say how
many rows are long and what right-truncation would lose, and evaluate/chat cut prompts the same way."""
from __future__ import annotations

import json
import re

import pytest

from core import cli
from core.cli.train import resolve_config
from core.data.dataset import parse_lines
from core.data.examples import Example, example_to_prompt_and_answer
from core.data.render import length_stats, render_example
from core.data.spans import label_tokens, trained_spans
from core.data.tokenize import encode
from core.data.truncation import fit, fit_prompt, long_rows_text, marker
from core.errors import InputError
from core.presets import config_for
from tests.genexport import generate, to_jsonl

MARK = re.compile(r"…\[([0-9,]+) tokens cut\]…")


@pytest.fixture(scope="module")
def long_export(tmp_path_factory):
    """40 GenAptitude rows, half of them with a whole element document of ~2,000 tokens in `input`."""
    path = tmp_path_factory.mktemp("long") / "long.jsonl"
    path.write_text(to_jsonl(generate(seed=3, rows=40, long_fraction=0.5)), encoding="utf-8")
    return path


def examples_of(path) -> list[Example]:
    return parse_lines(path.read_bytes()).examples


def as_written(tok, example: Example) -> tuple[list[int], list[int]]:
    """Token ids and labels of the whole row, nothing cut (the reference the fitted row is checked against)."""
    text, spans = trained_spans(tok, example)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], label_tokens(enc["input_ids"], enc["offset_mapping"], spans)


def trained_ids(ids, labels) -> list[int]:
    return [t for t, label in zip(ids, labels) if label != -100]


@pytest.fixture(params=["smollm2", "tiny_tokenizer"])
def tok(request):
    return request.getfixturevalue(request.param)


def test_long_export_trains_every_row_with_its_whole_answer_and_an_exact_mask(tok, long_export):
    examples = examples_of(long_export)
    lengths = [len(as_written(tok, e)[0]) for e in examples]
    long_rows = sum(n > 512 for n in lengths)
    assert long_rows >= 18  # the export is what the test is about: about half its rows exceed the cpu preset's 512

    cols, counts = encode(tok, examples, 512)
    assert len(cols["input_ids"]) == 40 and counts.dropped == 0 and counts.answer_cut == 0
    assert counts.cut == long_rows
    for e, ids, labels, n in zip(examples, cols["input_ids"], cols["labels"], lengths):
        assert len(ids) <= 512
        full_ids, full_labels = as_written(tok, e)
        # the mask covers exactly the answer: the trained ids are the whole row's answer ids, no more, no less
        assert trained_ids(ids, labels) == trained_ids(full_ids, full_labels), e.line
        answer = example_to_prompt_and_answer(e)[1]
        assert tok.decode(trained_ids(ids, labels)).startswith(answer)
        text = tok.decode(ids)
        if n > 512:
            (cut,) = MARK.findall(text)  # one visible cut, inside the user's input
            user = e.messages[-2]["content"]
            head, tail = text.split(MARK.search(text).group(0))
            assert user[:60] in head and user[-40:] in tail  # its start (the instruction) and its end are kept
            assert int(cut.replace(",", "")) >= n - 512
            assert text.endswith(answer + "<|im_end|>\n")  # the template's structure after the answer too
        else:
            assert ids == full_ids and not MARK.search(text)


def test_right_and_drop_are_still_there_and_say_what_they_cost(smollm2, long_export):
    examples = examples_of(long_export)
    right, counts = encode(smollm2, examples, 512, truncation="right")
    assert counts.dropped == 20 and len(right["input_ids"]) == 20  # today's behaviour: long rows lose their answer
    dropped, counts = encode(smollm2, examples, 512, truncation="drop")
    assert counts.dropped == 20 and dropped == right  # the short rows, untouched
    lines = dict(counts.log_lines(512, "drop"))
    assert "20 row(s) longer than --max-length (--truncation drop) and are left out" in lines


def test_an_answer_longer_than_max_length_is_cut_at_its_end_and_counted(tiny_tokenizer):
    answer = "Réponse détaillée, étape par étape. " * 12
    (e,) = parse_lines(json.dumps({"instruction": "Q", "input": "x " * 300, "output": answer}).encode()).examples
    full_ids, full_labels = as_written(tiny_tokenizer, e)
    n_answer = len(trained_ids(full_ids, full_labels))
    assert n_answer > 128
    f = fit(tiny_tokenizer, e, 128)
    assert f.outcome == "answer-cut" and len(f.input_ids) == 128
    assert f.cut_tokens > 0  # the input went first: only then was the answer cut
    assert 0 < f.n_trained and f.answer_lost == n_answer - f.n_trained
    assert trained_ids(f.input_ids, f.labels) == trained_ids(full_ids, full_labels)[:f.n_trained]
    stats = length_stats(tiny_tokenizer, [e], 128)
    assert (stats.over_max, stats.answer_cut_rows, stats.answer_cut_tokens) == (1, 1, f.answer_lost)
    assert f"1 answers are longer than max length by themselves and lose {f.answer_lost} tokens" \
        in long_rows_text(stats, "keep-answer")[0]


def chat(*turns: str) -> Example:
    roles = ["user", "assistant"] * len(turns)
    obj = {"messages": [{"role": "system", "content": "Tu es concis."}]
           + [{"role": r, "content": t} for r, t in zip(roles, turns)]}
    return parse_lines(json.dumps(obj).encode()).examples[0]


def test_multi_turn_rows_cut_earlier_turns_first_then_drop_them_then_cut_the_last_question(tiny_tokenizer):
    tok = tiny_tokenizer
    doc = json.dumps({"kind": "LogicalComponent", "history": ["révision de la fiche"] * 60}, ensure_ascii=False)
    e = chat("Premier document : " + doc, "Réponse une.", "Deuxième document : " + doc, "Réponse finale.")
    n = len(as_written(tok, e)[0])

    def turns(f):
        return [m["content"] for m in f.messages]

    # a little too long: only the first user turn is cut, the rest is whole
    f = fit(tok, e, n - 40)
    assert f.outcome == "cut" and f.dropped_turns == 0 and len(f.input_ids) <= n - 40
    assert MARK.search(turns(f)[1]) and turns(f)[2:] == [m["content"] for m in e.messages[2:]]
    # too long even with the first question cut to its ends: the first exchange goes, the second stays whole
    f = fit(tok, e, n // 2 + 20)
    assert f.dropped_turns == 2 and turns(f) == [m["content"] for m in e.messages[:1] + e.messages[3:]]
    # shorter still: the last question is cut in its middle; the system prompt and the last answer stay whole
    f = fit(tok, e, n // 3)
    assert f.outcome == "cut" and f.dropped_turns == 2 and len(f.input_ids) <= n // 3
    assert turns(f)[0] == "Tu es concis." and turns(f)[-1] == "Réponse finale." and MARK.search(turns(f)[1])
    assert tok.decode(trained_ids(f.input_ids, f.labels)) == "Réponse finale.<|im_end|>\n"


def test_check_prints_how_many_rows_are_long_how_they_are_handled_and_what_right_would_lose(smollm2, long_export,
                                                                                            capsys):
    examples = examples_of(long_export)
    lost = empty = 0
    for e in examples:  # counted here from the whole rows, independently of check
        ids, labels = as_written(smollm2, e)
        lost += len(trained_ids(ids[512:], labels[512:]))
        empty += not trained_ids(ids[:512], labels[:512])
    assert lost > 0 and empty == 20

    assert cli.main(["check", str(long_export), "--max-length", "512"]) == 0
    out = capsys.readouterr().out
    assert ("20 of 40 rows are longer than max length 512: their input is cut in the middle "
            "(marked …[N tokens cut]…), every answer kept whole") in out
    assert f"plain right-truncation would lose {lost:,} answer tokens; 20 rows would keep no answer token" in out
    assert re.search(r"--max-length \d+ would hold 95% of the rows as written, \d+ all of them", out)
    sample = out.split("as the model sees it: ", 1)[1]
    assert MARK.search(sample) and "input cut from" in out and "answer whole" in out  # the sample is a cut row

    assert cli.main(["check", str(long_export), "--max-length", "512", "--truncation", "right"]) == 0
    out = capsys.readouterr().out
    assert (f"20 of 40 rows are longer than max length 512: cut from the right (--truncation right): {lost:,} answer "
            "tokens lost; 20 rows keep no answer token and are left out") in out

    assert cli.main(["check", str(long_export), "--max-length", "512", "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["tokens"]
    assert (t["over_max"], t["cut_rows"], t["right_lost_tokens"], t["right_empty_rows"]) == (20, 20, lost, 20)
    assert t["truncation"] == "keep-answer" and t["suggested_max_length"]["all"] >= t["max"]


def test_the_preview_of_a_long_row_shows_the_cut(smollm2, long_export):
    from tui.screens.preview import CUT, header_text, rendered_text

    e = next(e for e in examples_of(long_export) if len(as_written(smollm2, e)[0]) > 512)
    r = render_example(smollm2, e, 512)
    shown = rendered_text(r)
    marks = [shown.plain[s.start:s.end] for s in shown.spans if s.style == CUT]
    assert marks == [marker(r.cut_tokens)]
    head = header_text(r, e.line, "smollm2-135m-instruct", 512).plain
    assert (f"✂ {r.n_before:,} tokens as written, longer than max length 512: {r.cut_tokens:,} tokens of the input "
            "cut in its middle") in head and "the answer is whole" in head
    trained = "".join(t for t, on in r.segments if on)
    assert trained == example_to_prompt_and_answer(e)[1] + "<|im_end|>\n"
    for how, why in (("drop", "--truncation drop"), ("right", "cut from the right, no answer token is left")):
        shown = header_text(render_example(smollm2, e, 512, how), e.line, "smollm2-135m-instruct", 512, how).plain
        assert f"this row is left out of training: {r.n_before:,} tokens as written, longer than max length 512 " \
               f"({why}; --truncation keep-answer would keep it" in shown


def test_evaluate_and_chat_cut_long_prompts_as_training_did(smollm2, long_export):
    from core.adapter.evaluate import Chat, Fitting, prompt_of

    e = next(e for e in examples_of(long_export) if len(as_written(smollm2, e)[0]) > 512)
    prompt = prompt_of(smollm2, e, Fitting(512, "keep-answer"))
    trained = fit(smollm2, e, 512)
    assert prompt == trained.messages[:-1] and MARK.search(prompt[-1]["content"])
    assert prompt_of(smollm2, e, Fitting(512, "right")) == example_to_prompt_and_answer(e)[0]  # right: whole

    chat_ = Chat.__new__(Chat)  # the prompt path alone, no model loaded
    chat_.tok, chat_.max_new_tokens, chat_.fitting = smollm2, 128, Fitting(512, "keep-answer")
    user = e.messages[-2]["content"]
    (cut,) = chat_.prompt_messages(user)
    rendered = smollm2.apply_chat_template([cut], tokenize=False, add_generation_prompt=True)
    assert len(smollm2(rendered)["input_ids"]) <= 512 - 128 and MARK.search(cut["content"])
    assert fit_prompt(smollm2, [{"role": "user", "content": "Bonjour"}], 512)[1] == 0  # short prompts untouched


def test_truncation_is_a_setting_of_the_cli_and_the_config(tmp_path):
    assert config_for("cpu").truncation == "keep-answer"
    args = cli.build_parser().parse_args(["train", "--preset", "cpu", "--truncation", "drop"])
    assert resolve_config(args).truncation == "drop"
    with pytest.raises(InputError) as err:
        config_for("cpu", truncation="middle").validate()
    assert "truncation must be keep-answer, right or drop, not 'middle'" in err.value.render()


# -- the TUI: told before training ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.anyio
async def test_the_tui_says_how_long_rows_are_handled_and_the_preview_shows_the_cut(smollm2, long_export, tmp_path):
    from tests.tui_fakes import NO_GPU, FakeEngine, screen_text, settle, static_text, wait_until
    from tui.app import TrainerApp
    from tui.screens.preview import CUT, PreviewScreen

    class Engine(FakeEngine):  # the real tokenizer's stats and previews, the rest scripted
        def length_stats(self, model, examples, max_length, instruction_turn="system"):
            return length_stats(smollm2, examples, max_length)

        def preview(self, model, example, max_length, truncation="keep-answer", instruction_turn="system"):
            self.preview_calls.append((model, example.line, max_length, truncation))
            return render_example(smollm2, example, max_length, truncation)

    engine = Engine(NO_GPU, lines=long_export.read_text(encoding="utf-8").splitlines())
    app = TrainerApp(engine, output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: "longer than max length" in static_text(app, "#overview-long"))
        overview = " ".join(static_text(app, "#overview-long").split())
        assert overview.startswith("⚠ 20 of 40 rows are longer than max length 512: their input is cut in the middle")
        assert "plain right-truncation would lose" in overview

        await pilot.press("2")  # the preset tab: the truncation field, and a max length that fits the rows
        estimate = " ".join(static_text(app, "#estimate").split())
        assert "max length 512: 20 of 40 rows are longer (keep-answer: input cut in the middle, answer whole)" \
            in estimate
        stats = app.dataset.stats
        assert (f"suggested max length: {stats.suggest_max_length():,} fits 95% of rows, RAM ≈ " in estimate
                and f"{stats.suggest_max_length(all_rows=True):,} fits all rows, RAM ≈ " in estimate)
        field = app.query_one("#field-truncation")
        assert field.value == "keep-answer"
        field.value = "drop"
        await wait_until(pilot, lambda: "left out (--truncation drop)" in static_text(app, "#dataset-stats"))
        assert app.presets.config.truncation == "drop"
        field.value = "middle"
        await pilot.pause()
        assert "truncation must be keep-answer, right or drop" in static_text(app, "#msg-truncation")
        field.value = "keep-answer"
        await wait_until(pilot, lambda: "every answer kept whole" in static_text(app, "#dataset-stats"))

        await pilot.press("escape", "3")  # the dataset tab, then the second row (a long one) in the preview
        text = " ".join(static_text(app, "#dataset-stats").split())
        assert "20 of 40 rows are longer than max length 512: their input is cut in the middle" in text
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen) and app.screen.rendered is not None)
        assert engine.preview_calls == [("smollm2-135m-instruct", 2, 512, "keep-answer")]
        r = app.screen.rendered
        assert r.outcome == "cut" and r.cut_tokens > 1000
        head = " ".join(str(app.screen.query_one("#preview-head").render()).split())
        assert (f"✂ {r.n_before:,} tokens as written, longer than max length 512: {r.cut_tokens:,} tokens of the input "
                "cut in its middle (see …[N tokens cut]… below), the answer is whole") in head
        on_screen = "".join(line.strip("█").replace(" ", "") for line in screen_text(app).splitlines())
        assert marker(r.cut_tokens).replace(" ", "") in on_screen  # on the screen (wrapped), in the row's text
        body = app.screen.body
        assert [body.plain[s.start:s.end] for s in body.spans if s.style == CUT] == [marker(r.cut_tokens)]


# -- a training run --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("truncation, trained_rows, said", [
    ("keep-answer", 40, "20 row(s) longer than --max-length 512: input cut in the middle (…[N tokens cut]…), "
                        "answer kept whole"),
    ("drop", 20, "20 row(s) longer than --max-length (--truncation drop) and are left out"),
])
@pytest.mark.slow
def test_a_run_trains_the_long_rows_or_leaves_them_out_and_says_which(tiny_model_dir, long_export, tmp_path,
                                                                      truncation, trained_rows, said):
    from core import events as ev
    from core.train.engine import train

    got: list = []
    config = config_for("cpu", model=str(tiny_model_dir), max_steps=1, eval_fraction=0.0, truncation=truncation)
    train(config, str(long_export), str(tmp_path / "out"), on_event=got.append)
    started = next(e for e in got if isinstance(e, ev.RunStarted))
    assert started.train_rows == trained_rows
    assert said in [e.message for e in got if isinstance(e, ev.LogLine)]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["config"]["truncation"] == truncation


def test_the_preset_tab_suggests_max_lengths_that_fit_the_rows_with_their_memory():
    from core.data.render import LengthStats
    from core.estimate import VramEstimate
    from tests.tui_fakes import RTX_3060, FakeEngine
    from tui.widgets.presets import PresetPanel

    class Engine(FakeEngine):
        def estimate(self, config, usable_gib=None):
            return VramEstimate(config.max_length / 256, {})  # 2112 tokens -> 8.2 GiB, 2240 -> 8.8 GiB

    panel = PresetPanel.__new__(PresetPanel)  # the text alone: no app needed
    panel.engine, panel.report = Engine(RTX_3060), RTX_3060  # 6.5 GiB free
    panel.length_stats = LengthStats(40, 80, 1072, 2109, 2235, 20, 1024)
    text = panel._max_length_text(config_for("8gb", max_length=1024)).plain
    assert "max length 1,024: 20 of 40 rows are longer (keep-answer: input cut in the middle, answer whole)" in text
    assert ("suggested max length: 2,112 fits 95% of rows, VRAM ≈ 8.2 GiB (more than the 6.5 GiB free); "
            "2,240 fits all rows, VRAM ≈ 8.8 GiB (more than the 6.5 GiB free)") in text
    assert panel._max_length_text(config_for("8gb", max_length=2048)).plain == ""  # stats of another max length
