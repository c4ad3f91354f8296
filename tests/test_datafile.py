"""What a user sees when their file as a whole is not what we expect (core.data.datafile): encodings, BOMs and
line endings, binary files, a JSON array or pretty-printed JSON instead of JSON Lines, missing, empty or unreadable
paths. Row by row problems are tests/test_dataset.py's."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random

import pytest

from core.data import datafile
from core.data.dataset import parse_lines, read_dataset
from core.errors import DatasetError
from tests.test_dataset import GEN_ROWS, fail, good, jsonl


# --------------------------------------------------------------------------- encodings and line endings


def test_bom_crlf_and_blank_lines():
    data = b"\xef\xbb\xbf" + jsonl(*GEN_ROWS[:2], eol="\r\n").replace(b"\r\n", b"\r\n\r\n   \t\r\n", 1)
    report = parse_lines(data, "win.jsonl")
    assert report.had_bom and report.had_crlf and report.encoding == "utf-8-sig"
    assert report.blank_lines == 2 and report.total_lines == 4
    assert [e.line for e in report.examples] == [1, 4]
    assert report.examples[1].messages[-1]["content"] == GEN_ROWS[1]["output"]  # no stray \r
    assert report.sha256 == hashlib.sha256(data).hexdigest()


def test_utf16_with_bom_is_converted():
    text = jsonl(*GEN_ROWS, eol="\r\n").decode("utf-8")
    report = parse_lines(b"\xff\xfe" + text.encode("utf-16-le"))
    assert report.encoding == "utf-16" and report.had_bom
    assert report.examples[0].messages[-1]["content"] == GEN_ROWS[0]["output"]


def test_utf16_without_bom_is_converted():
    report = parse_lines(jsonl(*GEN_ROWS, eol="\r\n").decode("utf-8").encode("utf-16-le"))
    assert report.encoding == "utf-16" and not report.had_bom and len(report.examples) == 3


def test_broken_utf16_is_refused():
    err = fail(b"\xff\xfe{\x00\x00\xd8")
    assert err.message == "data.jsonl: the file starts like UTF-16 text but cannot be decoded as UTF-16"
    assert "re-save the file as UTF-8" in err.hint


def test_a_long_utf16_or_utf32_file_is_read_whole_not_refused_line_by_line():
    text = jsonl(*good(30), eol="\r\n").decode("utf-8")
    for data in (b"\xff\xfe" + text.encode("utf-16-le"), b"\xfe\xff" + text.encode("utf-16-be"),
                 text.encode("utf-16-le"), text.encode("utf-32")):
        report = parse_lines(data, "data.jsonl")
        assert len(report.examples) == 30 and not report.problems
        assert report.examples[29].messages[-1]["content"] == good(30)[29]["output"]
    assert parse_lines(text.encode("utf-32")).encoding == "utf-32"


@pytest.mark.parametrize("data, sentence", [
    (gzip.compress(jsonl(*good(200))), "data.jsonl is a gzip archive, not JSON Lines text"),
    (b"PK\x03\x04" + bytes(range(256)) * 40, "data.jsonl is a zip archive (or an .xlsx/.docx file), not JSON Lines"),
    (random.Random(0).randbytes(20000), "data.jsonl looks like a binary file, not JSON Lines"),
], ids=["gzip", "zip", "random-bytes"])
def test_a_binary_file_gets_one_sentence_about_the_whole_file(data, sentence):
    err = fail(data)
    assert err.message.startswith("data.jsonl: " + sentence) and err.problems == []
    assert "NUL" not in err.render().split("(")[0] and len(err.render().splitlines()) == 2  # the sentence, the hint


def test_old_mac_cr_line_endings():
    report = parse_lines(jsonl(*GEN_ROWS, eol="\r"))
    assert len(report.examples) == 3 and report.total_lines == 3


def test_no_trailing_newline_and_line_count():
    report = parse_lines(jsonl(*GEN_ROWS).rstrip(b"\n"))
    assert report.total_lines == 3 and len(report.examples) == 3


# --------------------------------------------------------------------------- whole-file problems


def test_json_array_file():
    for data in (json.dumps(GEN_ROWS).encode(), json.dumps(GEN_ROWS, indent=2).encode(),
                 b"[\n" + b",\n".join(json.dumps(r).encode() for r in GEN_ROWS) + b"\n]\n"):
        err = fail(data)
        assert err.message == "data.jsonl: the file looks like a JSON array, not JSON Lines"
        assert "jq -c '.[]' file.json > dataset.jsonl" in err.render()


def test_pretty_printed_json():
    for data in (json.dumps(GEN_ROWS[0], indent=2).encode(),
                 b"\n".join(json.dumps(r, indent=1).encode() for r in GEN_ROWS),
                 json.dumps({"messages": [{"role": "user", "content": "Q"}]}, indent=None).encode()[:-1]
                 + b"\n}"):
        err = fail(data)
        assert "looks like pretty-printed JSON" in err.message, err.render()
        assert "jq -c . file.json > dataset.jsonl" in err.render()


@pytest.mark.parametrize("data, what", [(b"", "the file is empty"), (b"\n \r\n\t\n", "the file is empty (only 3 blank line(s))"),
                                        (b"\xef\xbb\xbf", "the file is empty")])
def test_empty_file(tmp_path, data, what):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as info:
        read_dataset(path)
    assert info.value.message == f"{path}: {what}"
    assert "cargo run --bin genaptitude ai_export_dataset" in info.value.render()


def test_directory(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(jsonl(*GEN_ROWS))
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path)
    assert info.value.message == f"{tmp_path}: is a directory, not a file"
    assert str(tmp_path / "train.jsonl") in info.value.hint


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "nope.jsonl")
    assert info.value.message == f"{tmp_path / 'nope.jsonl'}: no such file"
    assert "check the path" in info.value.hint
    (tmp_path / "data.jsonl").write_bytes(jsonl(GEN_ROWS[0]))
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "data")
    assert info.value.hint == f"did you mean {tmp_path / 'data'}.jsonl?"


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.jsonl"
    path.write_bytes(jsonl(*GEN_ROWS))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(datafile, "open", denied, raising=False)
    with pytest.raises(DatasetError) as info:
        read_dataset(path)
    assert info.value.message == f"{path}: permission denied, the file cannot be read"
    assert "chmod u+r" in info.value.hint


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_for_real(tmp_path):
    path = tmp_path / "locked.jsonl"
    path.write_bytes(jsonl(*GEN_ROWS))
    path.chmod(0)
    with pytest.raises(DatasetError, match="permission denied"):
        read_dataset(path)


def test_not_a_regular_file():
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    with pytest.raises(DatasetError, match="is not a regular file"):
        read_dataset("/dev/null")


@pytest.mark.parametrize("path", ["", "   ", 42])
def test_bad_path_argument(path):
    with pytest.raises(DatasetError):
        read_dataset(path)


def test_read_dataset_reads_a_file(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_bytes(jsonl(*GEN_ROWS))
    report = read_dataset(path)
    assert report.path == str(path) and len(report.examples) == 3
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
