"""Examples → token ids and loss labels, as a `datasets.Dataset` ready for the trainer (no TRL re-tokenising).

Fast path for big exports: chat templates are rendered once per conversation shape (`SpanRenderer`), texts are
tokenised a batch at a time (the Rust tokenizer spreads a batch over the CPU cores; no Python multiprocessing,
which hangs on WSL), and labels come from bisecting token offsets. The result is identical to `render.features`
row by row.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Callable, Iterator

from .dataset import Example
from .render import SpanRenderer, label_tokens

BATCH_ROWS = 1000  # rows per tokenizer call; progress is reported after each
ProgressFn = Callable[[int, int], None]  # (rows done, rows in all)


def encode(tok, examples: list[Example], max_length: int, on_progress: ProgressFn | None = None,
           batch_rows: int = BATCH_ROWS) -> tuple[dict[str, list], int]:
    """Token ids and labels of the rows that keep a trained token within max_length, and how many were dropped."""
    ids, labels, dropped = [], [], 0
    spans_of = SpanRenderer(tok)
    with _gc_paused():
        for start in range(0, len(examples), batch_rows):
            rendered = [spans_of(ex) for ex in examples[start:start + batch_rows]]
            enc = tok([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True,
                      return_attention_mask=False, return_token_type_ids=False)  # unused: skip converting them
            for (_, spans), row_ids, offsets in zip(rendered, enc["input_ids"], enc["offset_mapping"]):
                row_labels = label_tokens(row_ids, offsets, spans)[:max_length]
                if row_labels.count(-100) == len(row_labels):  # no answer token left: the row teaches nothing
                    dropped += 1
                    continue
                ids.append(row_ids[:max_length])
                labels.append(row_labels)
            if on_progress is not None:
                on_progress(min(start + batch_rows, len(examples)), len(examples))
    return {"input_ids": ids, "labels": labels}, dropped


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of new int lists (which hold no cycles) would trigger ever longer cyclic collections: pause them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def tokenize_split(tok, train: list[Example], evals: list[Example], max_length: int,
                   on_progress: ProgressFn | None = None):
    """Train and eval datasets, and the number of rows dropped; `on_progress(done, total)` counts both splits."""
    from datasets import Dataset

    from .errors import InputError

    total = len(train) + len(evals)

    def part(offset: int) -> ProgressFn | None:
        return None if on_progress is None else (lambda done, _n: on_progress(offset + done, total))

    train_cols, dropped = encode(tok, train, max_length, part(0))
    if not train_cols["input_ids"]:
        raise InputError(f"no training row keeps an answer token within max length {max_length}",
                         hint="raise --max-length (see `genaptitude-trainer check` for token lengths)")
    eval_cols, dropped_eval = encode(tok, evals, max_length, part(len(train)))
    with _gc_paused():  # converting the columns to Arrow makes millions of objects too
        eval_ds = Dataset.from_dict(eval_cols) if eval_cols["input_ids"] else None
        return Dataset.from_dict(train_cols), eval_ds, dropped + dropped_eval
