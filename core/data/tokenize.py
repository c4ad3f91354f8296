"""Examples → token ids and loss labels, as a `datasets.Dataset` ready for the trainer (no TRL re-tokenising).

Fast path for big exports: chat templates are rendered once per conversation shape (`SpanRenderer`), texts are
tokenised a batch at a time (the Rust tokenizer spreads a batch over the CPU cores; no Python multiprocessing,
which hangs on WSL), and labels come from bisecting token offsets. Rows longer than max length go through
`truncation.fit` one by one (the --truncation rule). The result is identical to `render.features` row by row.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Callable, Iterator

from core.data.examples import Example
from core.data.render import SpanRenderer
from core.data.spans import label_tokens
from core.data.truncation import FitCounts, fit

BATCH_ROWS = 1000  # rows per tokenizer call; progress is reported after each
ProgressFn = Callable[[int, int], None]  # (rows done, rows in all)


def encode(tok, examples: list[Example], max_length: int, on_progress: ProgressFn | None = None,
           batch_rows: int = BATCH_ROWS, truncation: str = "keep-answer") -> tuple[dict[str, list], FitCounts]:
    """Token ids and labels of the rows that keep a trained token within max_length, and what fitting did."""
    ids, labels, counts = [], [], FitCounts()
    spans_of = SpanRenderer(tok)
    with _gc_paused():
        for start in range(0, len(examples), batch_rows):
            batch = examples[start:start + batch_rows]
            rendered = [spans_of(ex) for ex in batch]
            enc = tok([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True,
                      return_attention_mask=False, return_token_type_ids=False)  # unused: skip converting them
            for ex, (text, spans), row_ids, offsets in zip(batch, rendered, enc["input_ids"], enc["offset_mapping"]):
                row_labels = label_tokens(row_ids, offsets, spans)
                if len(row_ids) > max_length:  # the --truncation rule decides
                    f = fit(tok, ex, max_length, truncation, spans_of=spans_of,
                            encoded=(text, row_ids, offsets, row_labels))
                    counts.add(f)
                    row_ids, row_labels = f.input_ids, f.labels
                else:
                    counts.rows += 1
                if row_labels.count(-100) == len(row_labels):  # no answer token left: the row teaches nothing
                    continue
                ids.append(row_ids)
                labels.append(row_labels)
            if on_progress is not None:
                on_progress(min(start + batch_rows, len(examples)), len(examples))
    return {"input_ids": ids, "labels": labels}, counts


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
                   on_progress: ProgressFn | None = None, truncation: str = "keep-answer"):
    """Train and eval datasets, and what fitting to max length did to both splits (a `FitCounts`);
    `on_progress(done, total)` counts both splits."""
    from datasets import Dataset

    from core.errors import InputError

    total = len(train) + len(evals)

    def part(offset: int) -> ProgressFn | None:
        return None if on_progress is None else (lambda done, _n: on_progress(offset + done, total))

    train_cols, counts = encode(tok, train, max_length, part(0), truncation=truncation)
    if not train_cols["input_ids"]:
        raise InputError(f"no training row keeps an answer token within max length {max_length}",
                         hint="raise --max-length (see `genaptitude-trainer check` for token lengths)"
                              + ("" if truncation == "keep-answer" else ", or use --truncation keep-answer"))
    eval_cols, eval_counts = encode(tok, evals, max_length, part(len(train)), truncation=truncation)
    counts += eval_counts
    with _gc_paused():  # converting the columns to Arrow makes millions of objects too
        eval_ds = Dataset.from_dict(eval_cols) if eval_cols["input_ids"] else None
        return Dataset.from_dict(train_cols), eval_ds, counts
