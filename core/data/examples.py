"""A training row once read (`Example`), and what the pipeline does with rows: the seeded train/eval split, the
prompt/answer split that evaluation asks for, and `flat`, the one-line form a row is shown and compared in.

Pure standard library, like the rest of the reading side.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from core.errors import InputError


@dataclass
class Example:
    """One valid training row."""

    line: int  # 1-based line number in the file
    messages: list[dict[str, str]]  # [{"role": ..., "content": ...}]; empty for the "text" format
    text: str | None = None  # only for the "text" format
    raw: dict | None = None  # the parsed JSON object, for previews
    layout: str | None = None  # instruction/input rows: the instruction turn they are laid out with (core.data.layout)


def split_examples(examples: list[Example], eval_fraction: float,
                   seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split into (train, eval); each side keeps file order. Train is never empty."""
    if not (0.0 <= eval_fraction < 1.0):
        raise InputError(f"eval fraction must be at least 0 and below 1, got {eval_fraction}",
                         hint="use e.g. 0.05 to hold out 5% of the rows, or 0 for no evaluation")
    n = len(examples)
    if eval_fraction == 0 or n < 2:
        return list(examples), []
    k = min(max(round(n * eval_fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    train = [e for i, e in enumerate(examples) if i not in held]
    evals = [e for i, e in enumerate(examples) if i in held]
    return train, evals


def example_to_prompt_and_answer(example: Example) -> tuple[list[dict], str]:
    """The turns before the last assistant turn, and that turn's content."""
    if example.text is not None or not example.messages:
        raise ValueError(f"line {example.line}: a plain-text example has no prompt/answer split")
    for i in range(len(example.messages) - 1, -1, -1):
        if example.messages[i]["role"] == "assistant":
            return [dict(m) for m in example.messages[:i]], example.messages[i]["content"]
    raise ValueError(f"line {example.line}: the example has no assistant turn")


def flat(text: str) -> str:
    """The text on one line, every run of whitespace (line breaks, tabs) one space: how a row is shown in a line,
    and how answers are compared (core.adapter.evaluate)."""
    return " ".join(text.split())
