"""Property tests: whatever bytes come in, parse_lines returns a DatasetReport or raises DatasetError."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.dataset import DatasetReport, parse_lines
from core.data.formats import FORMATS
from core.errors import DatasetError

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

VALID_FILE = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
    {"instruction": "Analyser cet élément technique du domaine Avionique.",
     "input": json.dumps({"id": "c0ffee", "name": "Capteur d'altitude \"A\"", "tags": ["LA", "é"]}),
     "output": "L'entité appartient à la collection 'components'."},
    {"instruction": "Quel est le rôle de la couche LA ?", "input": "",
     "output": "Dans la méthode Arcadia, la couche LA est celle de l'architecture logique."},
    {"instruction": "Vérifier le statut.", "input": "REQ-12\tC:\\\\specs", "output": "Statut 'validée' ✓ 🚀",
     "system": "Réponds en français."},
]).encode("utf-8")

KEYS = ["instruction", "input", "output", "system", "messages", "conversations", "prompt", "completion", "text",
        "role", "content", "from", "value"]
ROLES = ["system", "user", "assistant", "human", "gpt", "bot", ""]
TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20) | st.sampled_from(ROLES)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=5),
    max_leaves=15,
)

FIELD = TEXT | TEXT | JSON_VALUES  # mostly strings, sometimes anything
TURN = st.fixed_dictionaries({"role": st.sampled_from(ROLES) | JSON_VALUES, "content": FIELD})
ROWS = st.one_of(
    st.fixed_dictionaries({"instruction": FIELD, "output": FIELD}, optional={"input": FIELD, "system": FIELD}),
    st.fixed_dictionaries({"messages": st.lists(TURN, max_size=4) | JSON_VALUES}),
    st.fixed_dictionaries({"conversations": st.lists(st.fixed_dictionaries(
        {"from": st.sampled_from(ROLES), "value": FIELD}), max_size=4)}, optional={"system": FIELD}),
    st.fixed_dictionaries({"prompt": FIELD | st.lists(TURN, max_size=3),
                           "completion": FIELD | st.lists(TURN, max_size=2)}),
    st.fixed_dictionaries({"text": FIELD}),
    st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=3).map(  # well-formed chats with random text
        lambda pairs: {"messages": [{"role": r, "content": c} for q, a in pairs
                                    for r, c in (("user", q), ("assistant", a))]}),
    st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=3).map(
        lambda pairs: {"conversations": [{"from": r, "value": c} for q, a in pairs
                                         for r, c in (("human", q), ("gpt", a))]}),
    JSON_VALUES,
)


def check(data: bytes) -> None:
    """The contract: a consistent report, or a DatasetError whose problems all say where and how to fix."""
    for skip in (False, True):
        try:
            report = parse_lines(data, "fuzz.jsonl", skip_invalid=skip)
        except DatasetError as err:
            assert err.message and err.render()
            assert all(p.fix for p in err.problems), err.render()
            # the last-resort guards never fire: every failure has a specific message
            assert "bug in the trainer" not in err.hint
            assert not any(p.message.startswith("could not be read") for p in err.problems), err.render()
            assert all(p.line is None or p.line >= 1 for p in err.problems)
            continue
        assert isinstance(report, DatasetReport)
        assert report.format in FORMATS and report.examples
        assert len(report.examples) + report.skipped + report.blank_lines == report.total_lines
        assert skip or not report.problems
        assert all(p.fix and p.line and not p.message.startswith("could not be read") for p in report.problems)
        for ex in report.examples:
            if report.format == "text":
                assert ex.text and ex.text.strip() and ex.messages == []
            else:
                roles = [m["role"] for m in ex.messages]
                assert roles[-1] == "assistant" and "user" in roles
                assert set(roles) <= {"system", "user", "assistant"}
                assert all(isinstance(m["content"], str) for m in ex.messages)
                "".join(m["content"] for m in ex.messages).encode("utf-8")  # no lone surrogates


@FAST
@given(st.binary(max_size=3000))
def test_random_bytes(data):
    check(data)


@FAST
@given(st.lists(st.binary(max_size=200), max_size=8), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_random_byte_lines(lines, eol):
    check(eol.join(lines))


@pytest.mark.slow
@FAST
@given(st.lists(ROWS, min_size=1, max_size=8), st.booleans(), st.booleans())
def test_random_json_values_per_line(values, ascii_only, bom):
    text = "\n".join(json.dumps(v, ensure_ascii=ascii_only) for v in values)
    check((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))


def _mutate(data: bytes, kind: str, pos: int, payload: bytes) -> bytes:
    pos %= len(data)
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (payload[0] if payload else 0x80)]) + data[pos + 1:]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + payload + data[pos:]
    if kind == "delete_quote":
        at = data.find(b'"', pos)
        return data if at < 0 else data[:at] + data[at + 1:]
    if kind == "delete_all_quotes":
        return data.replace(b'"', b"")
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    return data[:pos] + data[pos + len(payload) + 1:]  # "delete": drop a run of bytes


MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete_quote", "delete_all_quotes", "crlf", "delete"]),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([b"\x00", b"\xff\xfe", b"\xe9", b"\xef\xbb\xbf", b"{", b"}", b"[", b"\n", b"\\", b"\\ud800",
                     b'"', b",", b"\r"]) | st.binary(min_size=1, max_size=8),
)


@FAST
@given(st.lists(MUTATION, min_size=1, max_size=5))
def test_mutated_genaptitude_file(mutations):
    data = VALID_FILE
    for kind, pos, payload in mutations:
        if data:
            data = _mutate(data, kind, pos, payload)
    check(data)


def test_the_unmutated_file_is_valid():
    report = parse_lines(VALID_FILE)
    assert report.format == "alpaca" and len(report.examples) == 3
