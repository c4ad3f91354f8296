"""What a user sees when core.data.dataset reads their JSON Lines file: rows, counts and error messages."""
from __future__ import annotations

import json
import time

import pytest

from core.data import dataset as ds
from core.data.dataset import DatasetReport, parse_lines
from core.data.examples import Example
from core.data.formats import FORMAT_LABELS, FORMATS
from core.errors import DatasetError, TrainerError

GEN_ROWS = [
    {"instruction": "Analyser cet élément technique du domaine Avionique.",
     "input": json.dumps({"id": "c0ffee", "name": "Capteur d'altitude", "layer": "LA"}, ensure_ascii=False),
     "output": "L'entité appartient à la collection 'components' dans l'espace projet 'avionics'."},
    {"instruction": "Quel est le rôle de la couche LA dans la méthode Arcadia ?", "input": "",
     "output": "Dans la méthode Arcadia, la couche LA est celle de l'architecture logique."},
    {"instruction": "Vérifier le statut de cette exigence du domaine Spatial.",
     "input": json.dumps({"id": "REQ-12", "status": "validée"}, ensure_ascii=False),
     "output": "L'exigence 'REQ-12' est au statut 'validée'."},
]


def jsonl(*rows: object, eol: str = "\n") -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + eol for r in rows).encode("utf-8")


def good(n: int = 1) -> list[dict]:
    return [GEN_ROWS[i % len(GEN_ROWS)] for i in range(n)]


def fail(data: bytes, **kw) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        parse_lines(data, "data.jsonl", **kw)
    return info.value


def only_problem(data: bytes) -> str:
    """The rendered single problem of a file whose one bad line is preceded by a good row."""
    err = fail(data)
    assert len(err.problems) == 1, err.render()
    return err.problems[0].render("data.jsonl")


# --------------------------------------------------------------------------- formats


ONE_ROW_OF = {
    "alpaca": {"instruction": "Q?", "input": "", "output": "A."},
    "messages": {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]},
    "prompt_completion": {"prompt": "Q?", "completion": "A."},
    "text": {"text": "Q? A."},
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_detected_and_named_in_words(fmt, tmp_path):
    from core.data.check import check_dataset

    path = tmp_path / "data.jsonl"
    path.write_bytes(jsonl(ONE_ROW_OF[fmt]))
    result = check_dataset(str(path), model=None, max_length=64)
    assert (result["format"], result["rows"]) == (fmt, 1)
    assert result["format_label"] == FORMAT_LABELS[fmt] != fmt  # what `check` prints: words, not the key


def test_a_bug_in_the_reader_keeps_its_traceback_instead_of_becoming_a_dataset_message(monkeypatch):
    def broken(obj):
        raise KeyError("a bug")

    monkeypatch.setattr(ds, "guess_format", broken)
    with pytest.raises(KeyError, match="a bug"):
        parse_lines(jsonl(GEN_ROWS[0]), "data.jsonl")


def test_genaptitude_alpaca_with_and_without_input():
    report = parse_lines(jsonl(*GEN_ROWS), "data.jsonl")
    assert isinstance(report, DatasetReport)
    assert report.format == "alpaca"
    assert [e.line for e in report.examples] == [1, 2, 3]
    first, second = report.examples[0], report.examples[1]
    # As RAISE prompts (core.data.layout): the instruction is the system turn, the input the user turn ...
    assert first.messages == [
        {"role": "system", "content": GEN_ROWS[0]["instruction"]},
        {"role": "user", "content": GEN_ROWS[0]["input"]},
        {"role": "assistant", "content": GEN_ROWS[0]["output"]},
    ]
    # ... and a row without input is a question on its own: its instruction is the user turn.
    assert second.messages == [
        {"role": "user", "content": GEN_ROWS[1]["instruction"]},
        {"role": "assistant", "content": GEN_ROWS[1]["output"]},
    ]
    assert first.text is None and first.raw == GEN_ROWS[0]
    assert report.problems == [] and report.skipped == 0
    assert report.total_lines == 3 and report.blank_lines == 0
    assert not report.had_bom and not report.had_crlf


def test_instruction_turn_user_keeps_the_layout_before_the_setting():
    first, second = parse_lines(jsonl(*GEN_ROWS[:2]), instruction_turn="user").examples
    assert first.messages == [
        {"role": "user", "content": GEN_ROWS[0]["instruction"] + "\n\n" + GEN_ROWS[0]["input"]},
        {"role": "assistant", "content": GEN_ROWS[0]["output"]},
    ]
    assert second.messages == [{"role": "user", "content": GEN_ROWS[1]["instruction"]},
                               {"role": "assistant", "content": GEN_ROWS[1]["output"]}]


def test_a_rows_own_system_field_wins_the_system_turn_in_either_layout():
    row = {"instruction": "I", "input": "X", "output": "A", "system": "Réponds en français."}
    for turn in ("system", "user"):
        assert parse_lines(jsonl(row), instruction_turn=turn).examples[0].messages == [
            {"role": "system", "content": "Réponds en français."}, {"role": "user", "content": "I\n\nX"},
            {"role": "assistant", "content": "A"}]


def test_alpaca_system_missing_input_null_input_and_extra_keys():
    data = jsonl({"instruction": "Q", "output": "A", "system": "Be brief.", "id": 7},
                 {"instruction": "Q2", "input": None, "output": "A2", "meta": {"x": 1}},
                 {"instruction": "Q3", "input": "   ", "output": "A3", "system": ""})
    ex = parse_lines(data).examples
    assert ex[0].messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"},
                              {"role": "assistant", "content": "A"}]
    assert ex[1].messages == [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]
    assert ex[2].messages == [{"role": "user", "content": "Q3"}, {"role": "assistant", "content": "A3"}]


def test_messages_with_system():
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More?"},
            {"role": "assistant", "content": "No.", "weight": 1}]
    report = parse_lines(jsonl({"messages": msgs}))
    assert report.format == "messages"
    assert report.examples[0].messages == [{"role": m["role"], "content": m["content"]} for m in msgs]


def test_sharegpt_roles_are_mapped():
    conv = [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"},
            {"from": "user", "value": "Q2"}, {"from": "assistant", "value": "A2"}]
    report = parse_lines(jsonl({"conversations": conv, "id": "x"}))
    assert report.format == "sharegpt"
    assert [m["role"] for m in report.examples[0].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert report.examples[0].messages[2] == {"role": "assistant", "content": "A"}


def test_sharegpt_top_level_system_is_prepended():
    row = {"system": "Sys", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    assert parse_lines(jsonl(row)).examples[0].messages[0] == {"role": "system", "content": "Sys"}


def test_prompt_completion_strings():
    report = parse_lines(jsonl({"prompt": "2+2?", "completion": "4"}))
    assert report.format == "prompt_completion"
    assert report.examples[0].messages == [{"role": "user", "content": "2+2?"},
                                           {"role": "assistant", "content": "4"}]


def test_prompt_completion_message_lists():
    row = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
           "completion": [{"role": "assistant", "content": "A"}]}
    assert parse_lines(jsonl(row)).examples[0].messages == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]


def test_prompt_completion_completion_must_be_assistant_turns():
    row = {"prompt": [{"role": "user", "content": "Q"}], "completion": [{"role": "user", "content": "A"}]}
    text = only_problem(jsonl(row))
    assert "data.jsonl:1: completion[0] has role 'user'; expected one of 'assistant'" in text
    assert "move the other turns into 'prompt'" in text


def test_text_format():
    report = parse_lines(jsonl({"text": "Once upon a time."}, {"text": "The end."}))
    assert report.format == "text"
    assert report.examples[0] == Example(line=1, messages=[], text="Once upon a time.",
                                         raw={"text": "Once upon a time."})


# --------------------------------------------------------------------------- broken lines


def test_invalid_json_names_line_and_column():
    data = jsonl(GEN_ROWS[0]) + b'{"instruction": "Q", "output": "A"\n'
    err = fail(data)
    assert err.message == "data.jsonl: 1 invalid line(s) out of 2"
    text = err.render()
    assert "data.jsonl:2: invalid JSON at column 35: Expecting ',' delimiter" in text
    assert "fix: each line must be one complete JSON object; check quotes and escapes" in text
    assert "pass --skip-invalid to train on the 1 valid rows only" in text
    assert isinstance(err, TrainerError) and err.exit_code == 2


@pytest.mark.parametrize("line, fix", [
    (b"{'instruction': 'Q', 'output': 'A'}", "looks like a Python dict"),
    (b'{"instruction": "Q", "output": "A"},', "remove the comma after the object"),
    (b'{"instruction": "C:\\Users", "output": "A"}', "backslash inside a string must be doubled"),
    (b'{"instruction": "Q", "output": "A\tB"}', "write it as \\t or \\n"),
    (b'{"instruction": "Q", "output": "unfinished', "a string is not closed"),
    (b"instruction,input,output", "is this a CSV or text file?"),
    (b'{"instruction": "Q", "output": "A"} {"instruction": "Q"}', "has more after the object ends"),
])
def test_invalid_json_fixes(line, fix):
    text = only_problem(jsonl(GEN_ROWS[0]) + line + b"\n")
    assert "data.jsonl:2: invalid JSON at column" in text
    assert fix in text


@pytest.mark.parametrize("line, kind", [
    (b"42", "a number (42)"), (b'"hello"', "a string"), (b"null", "null"), (b"true", "a boolean (true)"),
    (b"[1, 2]", "a list (JSON array)"),
])
def test_non_object_line(line, kind):
    text = only_problem(jsonl(GEN_ROWS[0]) + line + b"\n")
    assert f"data.jsonl:2: the line is {kind}, not a JSON object" in text


def test_double_encoded_line():
    text = only_problem(jsonl(GEN_ROWS[0]) + json.dumps(json.dumps(GEN_ROWS[1])).encode() + b"\n")
    assert "JSON-encoded twice" in text


def test_missing_field():
    text = only_problem(jsonl(GEN_ROWS[0], {"instruction": "Q", "input": ""}))
    assert "data.jsonl:2: missing field 'output'" in text
    assert "fix: add 'output': every alpaca row needs 'instruction' and 'output'" in text


def test_missing_field_with_a_near_name_suggests_renaming():
    text = only_problem(jsonl(GEN_ROWS[0], {"instruction": "Q", "response": "A"}))
    assert "data.jsonl:2: missing field 'output'" in text and "fix: rename 'response' to 'output'" in text


@pytest.mark.parametrize("value, shown, fix", [
    (42, "a number (42)", '"output": "42"'),
    (None, "null", "write the text of 'output'"),
    (["a", "b"], "a list (JSON array)", "join the parts into one string"),
    (False, "a boolean (false)", '"output": "false"'),
])
def test_non_string_field(value, shown, fix):
    text = only_problem(jsonl(GEN_ROWS[0], {"instruction": "Q", "input": "", "output": value}))
    assert f"data.jsonl:2: field 'output' is {shown}, expected a string" in text
    assert fix in text


@pytest.mark.parametrize("row, where", [
    ({"instruction": "Q", "output": ""}, "'output' is empty"),
    ({"instruction": "Q", "output": " \n\t"}, "'output' is empty"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": " "}]},
     "messages[1].content is empty"),
    ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": ""}]},
     "conversations[1].value is empty"),
    ({"prompt": "Q", "completion": ""}, "'completion' is empty"),
])
def test_empty_answer(row, where):
    text = only_problem(jsonl(row))
    assert f"data.jsonl:1: empty answer: nothing to learn ({where})" in text


def test_empty_text_and_empty_instruction():
    assert "empty text: nothing to learn" in only_problem(jsonl({"text": "ok"}, {"text": "  "}))
    assert "data.jsonl:2: field 'instruction' is empty" in only_problem(
        jsonl(GEN_ROWS[0], {"instruction": "", "output": "A"}))


def test_conversation_rules():
    def conv(*turns):
        return {"messages": [{"role": r, "content": c} for r, c in turns]}

    ok = conv(("user", "Q"), ("assistant", "A"))
    assert "data.jsonl:2: the conversation ends with a user turn, nothing to learn" in only_problem(
        jsonl(ok, conv(("user", "Q"), ("assistant", "A"), ("user", "Q2"))))
    assert "the conversation has no assistant turn: nothing to learn" in only_problem(
        jsonl(ok, conv(("system", "S"), ("user", "Q"))))
    assert "the conversation has no user turn" in only_problem(jsonl(ok, conv(("assistant", "A"))))
    text = only_problem(jsonl(ok, conv(("user", "Q"), ("bot", "A"))))
    assert "data.jsonl:2: messages[1] has role 'bot'; expected one of 'system', 'user', 'assistant'" in text
    assert "write the role in lowercase: 'user'" in only_problem(jsonl(ok, conv(("User", "Q"), ("assistant", "A"))))
    assert "messages[0].content is a number (3), expected a string" in only_problem(
        jsonl(ok, {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "A"}]}))
    assert "messages[0] is a string, expected an object with 'role' and 'content'" in only_problem(
        jsonl(ok, {"messages": ["hi"]}))
    assert "field 'messages' is an empty list" in only_problem(jsonl(ok, {"messages": []}))
    assert "field 'messages' is a string, expected a list of turns" in only_problem(jsonl(ok, {"messages": "hi"}))
    assert "conversations[1] has from 'bot'" in only_problem(jsonl(
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "bot", "value": "A"}]}))


def test_mixed_formats():
    data = jsonl(GEN_ROWS[0], {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
                 GEN_ROWS[1])
    text = only_problem(data)
    assert "data.jsonl:2: this line looks like messages but the file is alpaca (decided at line 1)" in text
    assert "split the file" in text


def test_format_is_decided_by_the_first_recognised_object():
    data = b"not json\n" + jsonl({"foo": 1}, {"text": "hello"}, GEN_ROWS[0])
    err = fail(data)
    assert "data.jsonl:4: this line looks like alpaca but the file is text (decided at line 3)" in err.render()


def test_unknown_keys():
    text = only_problem(jsonl(GEN_ROWS[0], {"question": "Q", "answer": "A"}))
    assert "data.jsonl:2: no known fields (found keys: 'question', 'answer')" in text
    assert "expected 'instruction' and 'output'" in text
    assert "fix: rename 'question' to 'instruction', 'answer' to 'output'" in text
    text = only_problem(jsonl(GEN_ROWS[0], {}))
    assert "data.jsonl:2: the line is an empty object {}" in text


def test_undecodable_bytes_name_the_byte_and_other_lines_still_validate():
    bad = 'Caf\u00e9'.encode("cp1252")
    data = jsonl(GEN_ROWS[0]) + b'{"instruction": "' + bad + b'", "output": "A"}\n' + b'{"instruction": 1}\n'
    err = fail(data)
    text = err.render()
    assert "data.jsonl:2: not valid UTF-8 at byte 21 of line 2 (bytes e9)" in text
    assert "fix: re-save the file as UTF-8" in text
    assert "data.jsonl:3: field 'instruction' is a number (1), expected a string" in text
    assert err.message == "data.jsonl: 2 invalid line(s) out of 3"
    # byte positions are counted in the file as it is, BOM included
    assert "not valid UTF-8 at byte 4 of line 1" in fail(b"\xef\xbb\xbf\x93\n").render()


def test_nul_bytes():
    text = only_problem(jsonl(GEN_ROWS[0]) + b'{"instruction": "Q\x00", "output": "A"}\n')
    assert "data.jsonl:2: contains NUL bytes (binary data?), first at byte 19" in text


def test_lone_surrogate_escape():
    text = only_problem(jsonl(GEN_ROWS[0]) + b'{"instruction": "Q", "output": "smile \\ud83d"}\n')
    assert "data.jsonl:2: contains a broken \\u escape" in text
    ok = parse_lines(b'{"instruction": "Q", "output": "smile \\ud83d\\ude00"}\n')
    assert ok.examples[0].messages[-1]["content"] == "smile \U0001F600"


def test_deeply_nested_json_is_a_problem_not_a_crash():
    depth = 100_000
    data = jsonl(GEN_ROWS[0]) + b'{"instruction": "Q", "output": ' + b"[" * depth + b"]" * depth + b"}\n"
    data += b'{"a": ' * depth + b"1" + b"}" * depth + b"\n"
    err = fail(data)
    assert [p.line for p in err.problems] == [2, 3]
    assert all("nested too deeply" in p.message for p in err.problems)


def test_ten_megabyte_line():
    huge = "x" * 10_000_000
    start = time.perf_counter()
    report = parse_lines(jsonl(GEN_ROWS[0], {"instruction": "Q", "output": huge}))
    assert report.examples[1].messages[-1]["content"] == huge
    err = fail(jsonl(GEN_ROWS[0]) + b'{"instruction": "Q", "output": "' + huge.encode())
    assert time.perf_counter() - start < 5
    text = err.render()
    assert "data.jsonl:2: invalid JSON at column 32: Unterminated string" in text
    assert len(text) < 1000


# --------------------------------------------------------------------------- skipping and rendering


def test_skip_invalid_keeps_the_valid_rows():
    data = jsonl(GEN_ROWS[0]) + b"{oops\n\n" + jsonl(GEN_ROWS[1], {"instruction": "Q", "output": ""})
    report = parse_lines(data, "data.jsonl", skip_invalid=True)
    assert [e.line for e in report.examples] == [1, 4]
    assert [p.line for p in report.problems] == [2, 5]
    assert report.skipped == 2 and report.blank_lines == 1 and report.total_lines == 5
    assert all(p.fix for p in report.problems)


def test_skip_invalid_with_nothing_left():
    err = fail(b"{oops\n42\n", skip_invalid=True)
    assert err.message == "data.jsonl: no valid rows left after skipping 2 invalid line(s)"
    assert [p.line for p in err.problems] == [1, 2]


def test_many_problems_render_first_twenty_and_a_count():
    data = jsonl(GEN_ROWS[0]) + b"".join(b'{"instruction": "Q%d", "output": ""}\n' % i for i in range(25))
    err = fail(data)
    assert err.message == "data.jsonl: 25 invalid line(s) out of 26"
    assert len(err.problems) == 25 and [p.line for p in err.problems] == list(range(2, 27))
    text = err.render()
    assert text.count("empty answer: nothing to learn") == 20
    assert "data.jsonl:21: empty answer" in text and "data.jsonl:22:" not in text
    assert "  ... and 5 more problem(s) not shown" in text
    assert text.endswith("hint: fix the lines above, or pass --skip-invalid to train on the 1 valid rows only")


def test_max_problems_kept_caps_the_list_not_the_count():
    data = jsonl(GEN_ROWS[0]) + b"x\n" * 50
    err = fail(data, max_problems_kept=10)
    assert err.message == "data.jsonl: 50 invalid line(s) out of 51" and len(err.problems) == 10
    report = parse_lines(data, skip_invalid=True, max_problems_kept=10)
    assert report.skipped == 50 and len(report.problems) == 10
    assert fail(data, max_problems_kept=0).message == "data.jsonl: 50 invalid line(s) out of 51"


def test_every_problem_has_a_line_and_a_fix():
    data = (jsonl(GEN_ROWS[0]) + b"{bad\n42\n\xff\n\x00\n" +
            jsonl({"messages": []}, {"instruction": 1, "output": "a"}, {"zzz": 1}, {"instruction": "Q", "output": " "}))
    err = fail(data)
    assert [p.line for p in err.problems] == list(range(2, 10))
    assert all(p.fix for p in err.problems)
