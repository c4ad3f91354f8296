"""The fast tokenising path (`core.data.tokenize.encode`): the same ids and labels as rendering row by row, progress
events, and a speed bound derived from the target (a 100k-row export tokenised in under 60 s on 2 CPU cores)."""
from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import pytest

from core.cli import printers
from core.data.dataset import parse_lines, read_dataset
from core.data.examples import Example
from core.data.render import SpanRenderer, features
from core.data.spans import label_tokens, trained_spans
from core.data.tokenize import encode, tokenize_split
from core.errors import InputError
from core.events import Finished, Phase, Progress, from_json
from tests.genexport import generate, to_jsonl
from tests.tinymodels import BUNDLED_DATASET


@pytest.fixture(params=["smollm2", "tiny_tokenizer"])
def tok(request):
    return request.getfixturevalue(request.param)


def reference(tok, examples: list[Example], max_length: int,
              truncation: str = "right") -> tuple[dict[str, list], int]:
    """What `encode` must return: `render.features` row by row, the straightforward (slow) path."""
    ids, labels, dropped = [], [], 0
    for ex in examples:
        f = features(tok, ex, max_length, truncation)
        if f.n_trained == 0:
            dropped += 1
            continue
        ids.append(f.input_ids)
        labels.append(f.labels)
    return {"input_ids": ids, "labels": labels}, dropped


def rows_of(*objs: dict) -> list[Example]:
    return parse_lines("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode()).examples


def assorted() -> list[Example]:
    """Every format, several conversation shapes, whitespace, accents, emoji, and the sentinel characters."""
    long_q = "Détaille chaque étape, s'il te plaît. " * 30
    return (
        rows_of({"instruction": "Analyser cet élément.", "input": '{"id": "é-1"}', "output": "Réponse « une »."},
                {"instruction": "  Espaces autour  ", "input": "", "output": "\n réponse avec espaces \n"},
                {"instruction": "Q", "input": "", "output": "A", "system": "Tu es concis."},
                {"instruction": "Caractères privés \ue000 0 \ue001", "input": "", "output": "ok \ue0010\ue000"})
        + rows_of({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Salut 👋"},
                                {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": long_q},
                                {"role": "assistant", "content": "Étape 1… étape 2… " * 20}]},
                  {"messages": [{"role": "user", "content": "第一个问题"}, {"role": "assistant", "content": "答案"},
                                {"role": "user", "content": "<|im_end|> dans le texte"},
                                {"role": "assistant", "content": "\t<b>balises</b> & \"guillemets\""}]})
        + rows_of({"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]},
                  {"conversations": [{"from": "system", "value": "Sys"}, {"from": "human", "value": "Q2"},
                                     {"from": "gpt", "value": "A2"}]})
        + rows_of({"prompt": "2+2 ?", "completion": "4"}, {"prompt": long_q, "completion": "Un dernier mot."})
        + rows_of({"text": "Il était une fois."}, {"text": "  texte brut\navec retour  "})
    )


def test_span_renderer_matches_direct_rendering(tok):
    examples = read_dataset(str(BUNDLED_DATASET)).examples[:40] + assorted()
    spans_of = SpanRenderer(tok)
    for ex in examples + examples:  # the second pass goes through the cached skeletons
        assert spans_of(ex) == trained_spans(tok, ex), ex.line


def encoded(tok, examples, max_length, truncation="right", batch_rows=64):
    cols, counts = encode(tok, examples, max_length, batch_rows=batch_rows, truncation=truncation)
    return cols, counts.dropped


@pytest.mark.parametrize("max_length", [512, 200, 40])
def test_encode_matches_row_by_row_features_on_the_bundled_export(tok, max_length):
    examples = read_dataset(str(BUNDLED_DATASET)).examples
    got = encoded(tok, examples, max_length)
    assert got == reference(tok, examples, max_length)
    cols, dropped = got
    if max_length == 40:  # every answer comes after the 40th token: all rows dropped, as before
        assert dropped == len(examples) and cols["input_ids"] == []
    elif max_length == 200:  # truncated rows kept where part of the answer remains, dropped where none does
        assert 0 < dropped < len(examples)
        assert any(len(ids) == max_length for ids in cols["input_ids"])


@pytest.mark.parametrize("truncation", ["keep-answer", "drop"])
@pytest.mark.parametrize("max_length", [512, 200, 40])
def test_encode_matches_row_by_row_features_with_each_truncation(tok, max_length, truncation):
    examples = read_dataset(str(BUNDLED_DATASET)).examples[:80] + assorted()
    assert encoded(tok, examples, max_length, truncation) == reference(tok, examples, max_length, truncation)


@pytest.mark.parametrize("max_length", [1024, 64, 24])
def test_encode_matches_row_by_row_features_on_every_format(tok, max_length):
    examples = assorted()
    got = encoded(tok, examples, max_length, batch_rows=5)
    assert got == reference(tok, examples, max_length)
    if max_length == 64:  # the long prompt pushes its answer out; the first answer of a long chat survives
        assert 0 < got[1] < len(examples)


def test_a_template_that_trims_content_falls_back_to_direct_rendering(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = tok.chat_template.replace("message['content']", "message['content'] | trim")
    examples = assorted()
    assert encoded(tok, examples, 1024) == reference(tok, examples, 1024)


def test_a_template_that_is_not_prefix_stable_is_refused_as_before(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    examples = rows_of({"instruction": "Q", "input": "", "output": "A"})
    with pytest.raises(InputError, match="prefix by prefix"):
        features(tok, examples[0], 64)
    with pytest.raises(InputError, match="prefix by prefix"):
        encode(tok, examples, 64)


def test_labels_by_bisection_match_the_per_token_test():
    ids = list(range(100, 110))
    offsets = [(0, 2), (2, 3), (3, 3), (3, 5), (5, 5), (5, 8), (8, 9), (9, 9), (9, 12), (12, 14)]
    for spans in ([], [(0, 14)], [(3, 5)], [(4, 9)], [(5, 5)], [(1, 3), (9, 20)], [(2, 9), (5, 12)]):
        want = [t if any(a <= s < b for a, b in spans) else -100 for t, (s, _) in zip(ids, offsets)]
        assert label_tokens(ids, offsets, spans) == want, spans
    shuffled = offsets[5:] + offsets[:5]  # starts out of order: the per-token test still answers
    assert label_tokens(ids, shuffled, [(3, 9)]) == [
        t if 3 <= s < 9 else -100 for t, (s, _) in zip(ids, shuffled)]


def test_progress_counts_rows_of_both_splits_up_to_the_total(tiny_tokenizer):
    examples = read_dataset(str(BUNDLED_DATASET)).examples
    calls: list[tuple[int, int]] = []
    encode(tiny_tokenizer, examples, 512, lambda done, total: calls.append((done, total)), batch_rows=100)
    assert calls == [(100, 240), (200, 240), (240, 240)]

    calls.clear()
    train, evals = examples[:200], examples[200:]
    _, eval_ds, _ = tokenize_split(tiny_tokenizer, train, evals, 512, lambda d, t: calls.append((d, t)))
    assert eval_ds is not None and len(eval_ds) == 40
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and calls[-1] == (240, 240) and {t for _, t in calls} == {240}


def test_progress_event_round_trips_through_json():
    event = Progress("tokenizing", 40_000, 100_000)
    assert event.kind == "progress"
    assert json.loads(event.to_json()) == {"event": "progress", "phase": "tokenizing", "done": 40_000,
                                           "total": 100_000}
    assert from_json(event.to_json()) == event


def test_the_cli_prints_progress_once_per_tenth_and_at_the_end(capsys):
    printers._shown_progress.clear()
    for done in list(range(1000, 100_000, 1000)) + [100_000]:
        printers.human_printer(Progress("tokenizing", done, 100_000))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[tokenizing] 1,000/100,000 rows (1%)"
    assert lines[1] == "[tokenizing] 10,000/100,000 rows (10%)"
    assert lines[-1] == "[tokenizing] 100,000/100,000 rows (100%)"
    assert len(lines) == 11
    printers.human_printer(Progress("tokenizing", 240, 240))  # a later run of one batch still shows its line
    assert capsys.readouterr().out == "[tokenizing] 240/240 rows (100%)\n"


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_tui_shows_progress_in_the_status_line_not_the_log(tmp_path):
    from tests.tui_fakes import NO_GPU, FakeEngine, log_text, settle, static_text, wait_until
    from tui.app import TrainerApp

    gate = threading.Event()

    def tokenizing_run(on_event, stop_event, output_dir):
        on_event(Phase("tokenizing", "100000 rows"))
        for done in (20_000, 40_000):
            on_event(Progress("tokenizing", done, 100_000))
        gate.wait(10)
        on_event(Finished(output_dir=output_dir, steps=0, total_steps=0, train_loss=None, eval_loss=None,
                          stopped_early=False, runtime_s=1.0))
        return Path(output_dir)

    app = TrainerApp(FakeEngine(NO_GPU, run=tokenizing_run), output=str(tmp_path / "adapter"), refresh_interval=None,
                     stats_delay=0, show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: "40,000" in static_text(app, "#run-status"))
        assert static_text(app, "#run-status") == "tokenizing… 40,000/100,000 rows"
        assert "▶ tokenizing: 100000 rows" in log_text(app) and "20,000" not in log_text(app)
        gate.set()
        await wait_until(pilot, lambda: app.training.state == "finished")


@pytest.mark.slow
def test_five_thousand_rows_tokenise_fast_enough(smollm2, monkeypatch):
    """60 s per 100k rows is 3 s per 5k; 6 s leaves room for a loaded CI box (the row-by-row path took ~8 s)."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # conftest turns it off; a real run leaves it on
    examples = parse_lines(to_jsonl(generate(seed=11, rows=5000)).encode()).examples
    start = time.perf_counter()
    cols, counts = encode(smollm2, examples, 512)
    elapsed = time.perf_counter() - start
    assert len(cols["input_ids"]) + counts.dropped == 5000
    assert elapsed < 6.0, f"5,000 rows took {elapsed:.1f}s"
