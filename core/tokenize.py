"""Examples → token ids and loss labels, as a `datasets.Dataset` ready for the trainer (no TRL re-tokenising)."""
from __future__ import annotations

from .dataset import Example
from .render import features


def encode(tok, examples: list[Example], max_length: int) -> tuple[dict[str, list], int]:
    ids, labels, dropped = [], [], 0
    for ex in examples:
        f = features(tok, ex, max_length)
        if f.n_trained == 0:
            dropped += 1
            continue
        ids.append(f.input_ids)
        labels.append(f.labels)
    return {"input_ids": ids, "labels": labels}, dropped


def tokenize_split(tok, train: list[Example], evals: list[Example], max_length: int):
    from datasets import Dataset

    from .errors import InputError

    train_cols, dropped = encode(tok, train, max_length)
    if not train_cols["input_ids"]:
        raise InputError(f"no training row keeps an answer token within max length {max_length}",
                         hint="raise --max-length (see `genaptitude-trainer check` for token lengths)")
    eval_ds = None
    if evals:
        eval_cols, dropped_eval = encode(tok, evals, max_length)
        dropped += dropped_eval
        if eval_cols["input_ids"]:
            eval_ds = Dataset.from_dict(eval_cols)
    return Dataset.from_dict(train_cols), eval_ds, dropped
