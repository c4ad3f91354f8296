"""A row once read (core.data.examples): the seeded train/eval split and the prompt and answer evaluation takes."""
from __future__ import annotations

import pytest

from core.data.dataset import parse_lines
from core.data.examples import Example, example_to_prompt_and_answer, split_examples
from core.errors import InputError
from tests.test_dataset import GEN_ROWS, jsonl


# --------------------------------------------------------------------------- split and evaluation helpers


def rows(n: int) -> list[Example]:
    return [Example(line=i + 1, messages=[{"role": "user", "content": str(i)},
                                          {"role": "assistant", "content": "a"}]) for i in range(n)]


@pytest.mark.parametrize("n, fraction, expected_eval", [
    (100, 0.1, 10), (100, 0.05, 5), (10, 0.01, 1), (2, 0.5, 1), (2, 0.9, 1), (3, 0.99, 2), (1, 0.5, 0),
    (0, 0.5, 0), (50, 0.0, 0),
])
def test_split_sizes(n, fraction, expected_eval):
    train, evals = split_examples(rows(n), fraction, seed=1)
    assert len(evals) == expected_eval and len(train) == n - expected_eval
    assert n == 0 or train
    assert sorted(e.line for e in train + evals) == list(range(1, n + 1))


def test_split_is_deterministic_and_seeded():
    a = split_examples(rows(200), 0.1, seed=42)
    b = split_examples(rows(200), 0.1, seed=42)
    c = split_examples(rows(200), 0.1, seed=7)
    assert [e.line for e in a[1]] == [e.line for e in b[1]]
    assert [e.line for e in a[1]] != [e.line for e in c[1]]
    assert [e.line for e in a[0]] == sorted(e.line for e in a[0])  # each side keeps file order


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2, float("nan")])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(InputError, match="eval fraction"):
        split_examples(rows(10), fraction, seed=0)


def test_example_to_prompt_and_answer():
    ex = parse_lines(jsonl({"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]})).examples[0]
    prompt, answer = example_to_prompt_and_answer(ex)
    assert answer == "A2"
    assert prompt == ex.messages[:4] and prompt is not ex.messages
    alpaca = parse_lines(jsonl(GEN_ROWS[1])).examples[0]
    assert example_to_prompt_and_answer(alpaca) == ([{"role": "user", "content": GEN_ROWS[1]["instruction"]}],
                                                    GEN_ROWS[1]["output"])
    with pytest.raises(ValueError):
        example_to_prompt_and_answer(Example(line=1, messages=[], text="plain"))
