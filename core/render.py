"""Render examples through the model's own chat template and mark which tokens carry the loss.

The mask is built from character spans, not from template tags: for each assistant turn the template is
rendered up to the generation prompt and up to the end of that turn; the characters in between (the answer and
its end-of-turn token) are trained, everything else is not. This works for templates without
`{% generation %}` markers (Qwen2.5's, SmolLM2's), where `assistant_only_loss` silently goes wrong.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from .dataset import Example
from .errors import InputError, Problem

PAD_CANDIDATES = ("<|endoftext|>", "<|fim_pad|>", "<pad>", "<|pad|>", "<unk>", "<|finetune_right_pad_id|>")


@dataclass
class Features:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss
    truncated: bool
    text: str
    offsets: list[tuple[int, int]]

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != -100)


@dataclass
class RenderedExample:
    segments: list[tuple[str, bool]]  # (text, trained) runs, exactly the text the model sees
    n_tokens: int
    n_trained: int
    truncated: bool


@dataclass
class LengthStats:
    count: int
    min: int
    median: int
    p95: int
    max: int
    over_max: int
    max_length: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def load_tokenizer(model: str, trust_remote_code: bool = False, on_phase=None):
    from .models import resolve

    return tokenizer_from(resolve(model, on_phase=on_phase, trust_remote_code=trust_remote_code), trust_remote_code)


def tokenizer_from(path, trust_remote_code: bool = False):
    """The tokenizer saved in a local folder, with a pad token distinct from EOS."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    ensure_pad_token(tok)
    return tok


def ensure_pad_token(tok) -> None:
    """Give the tokenizer a pad token different from EOS, so padding never masks the end-of-turn token."""
    eos = tok.eos_token
    if tok.pad_token is not None and tok.pad_token != eos:
        return
    vocab = tok.get_vocab()
    for cand in PAD_CANDIDATES:
        if cand in vocab and cand != eos:
            tok.pad_token = cand
            return
    raise InputError("the tokenizer has no padding token distinct from its end-of-sequence token",
                     hint="pick a model whose tokenizer has <pad> or <|endoftext|>, or add one to its tokenizer")


def _template(tok, messages, *, generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def trained_spans(tok, example: Example) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the [start, end) character spans that carry the loss."""
    if example.text is not None:
        eos = tok.eos_token or ""
        return example.text + eos, [(0, len(example.text) + len(eos))]
    if not getattr(tok, "chat_template", None):
        raise InputError("this model's tokenizer has no chat template",
                         hint="use an instruct/chat model, or a dataset of plain {\"text\": ...} rows")
    msgs = example.messages
    full = _template(tok, msgs, generation_prompt=False)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _template(tok, msgs[:i], generation_prompt=True) if i else ""
        upto = _template(tok, msgs[: i + 1], generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise InputError(
                "this model's chat template does not render conversations prefix by prefix, so the answer "
                "tokens cannot be located", problems=[Problem("template is not prefix-stable", line=example.line)],
                hint="use another model or a plain text dataset")
        spans.append((len(before), len(upto)))
    return full, spans


def features(tok, example: Example, max_length: int) -> Features:
    text, spans = trained_spans(tok, example)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    labels = [tid if any(a <= start < b for a, b in spans) else -100 for tid, (start, _) in zip(ids, offsets)]
    truncated = len(ids) > max_length
    if truncated:
        ids, labels, offsets = ids[:max_length], labels[:max_length], offsets[:max_length]
    return Features(ids, labels, truncated, text, offsets)


def render_example(tok, example: Example, max_length: int) -> RenderedExample:
    f = features(tok, example, max_length)
    segments: list[tuple[str, bool]] = []
    pos = 0
    for (start, end), label in zip(f.offsets, f.labels):
        trained = label != -100
        if start > pos:  # characters the tokenizer folded into no token (rare): show them untrained
            _append(segments, f.text[pos:start], False)
        _append(segments, f.text[start:end], trained)
        pos = max(pos, end)
    return RenderedExample(segments, len(f.input_ids), f.n_trained, f.truncated)


def _append(segments: list[tuple[str, bool]], text: str, trained: bool) -> None:
    if not text:
        return
    if segments and segments[-1][1] == trained:
        segments[-1] = (segments[-1][0] + text, trained)
    else:
        segments.append((text, trained))


def length_stats(tok, examples: list[Example], max_length: int) -> LengthStats:
    lengths = sorted(len(tok(trained_spans(tok, e)[0], add_special_tokens=False)["input_ids"]) for e in examples)
    if not lengths:
        return LengthStats(0, 0, 0, 0, 0, 0, max_length)
    p95 = lengths[min(len(lengths) - 1, int(round(0.95 * (len(lengths) - 1))))]
    return LengthStats(len(lengths), lengths[0], int(statistics.median(lengths)), p95, lengths[-1],
                       sum(1 for n in lengths if n > max_length), max_length)
