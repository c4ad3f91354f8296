"""Render examples through the model's own chat template, as the model will see them: the preview's segments, the
token features of a row, the fast renderer for whole exports, and the length statistics `check` reports. Which
characters and tokens carry the loss is core.data.spans'."""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from core.data.examples import Example
from core.data.spans import assistant_edges, label_tokens, trained_spans
from core.data.truncation import Fitted, fit, suggested_max_length


Features = Fitted  # a row's token ids and loss labels, fitted into max length (core/data/truncation.py)


@dataclass
class RenderedExample:
    segments: list[tuple[str, bool]]  # (text, trained) runs, exactly the text the model sees
    n_tokens: int
    n_trained: int
    truncated: bool
    outcome: str = "fits"  # see truncation.Fitted: fits | cut | answer-cut | right | dropped
    n_before: int = 0  # tokens of the row as written
    cut_tokens: int = 0
    dropped_turns: int = 0
    answer_lost: int = 0


@dataclass
class LengthStats:
    count: int
    min: int
    median: int
    p95: int
    max: int
    over_max: int
    max_length: int
    # What each --truncation does with the rows over max length (truncation.long_rows_text words it):
    right_lost_tokens: int = 0  # answer tokens plain right-truncation would lose
    right_lost_rows: int = 0  # rows that would lose some of their answer that way
    right_empty_rows: int = 0  # ... and those left with no answer token at all (they teach nothing)
    cut_rows: int = 0  # keep-answer: rows whose input is cut in the middle
    answer_cut_rows: int = 0  # keep-answer: rows whose answer alone exceeds max length (cut from its end)
    answer_cut_tokens: int = 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "suggested_max_length": {"p95": self.suggest_max_length(),
                                                          "all": self.suggest_max_length(all_rows=True)}}

    def suggest_max_length(self, all_rows: bool = False) -> int:
        """A max length (a multiple of 64) that holds 95% of the rows as written, or all of them."""
        return suggested_max_length(self.max if all_rows else self.p95)


def features(tok, example: Example, max_length: int, truncation: str = "keep-answer") -> Features:
    """The row's token ids and labels within max length, by the `truncation` rule (core/data/truncation.py)."""
    return fit(tok, example, max_length, truncation)


_PAD = "\n \t<think>\"'&\\</think> \n"
_SENTINELS = ("\ue000", "\ue001")
_SLOT = re.compile(re.escape(_PAD) + "\ue000([0-9]+)\ue001" + re.escape(_PAD))


def _slot(i: int) -> str:
    return f"{_PAD}\ue000{i}\ue001{_PAD}"


@dataclass(frozen=True)
class _Skeleton:
    """A conversation shape rendered once: pieces[0] + content[slots[0]] + pieces[1] + ... + pieces[-1]."""

    pieces: tuple[str, ...]
    slots: tuple[int, ...]  # the message whose content fills each gap between pieces
    marks: tuple[tuple[int, int], ...]  # each span edge as (contents before it, literal characters before it)


def _skeleton(tok, roles: tuple[str, ...]) -> _Skeleton | None:
    """The shape's skeleton, or None where substitution cannot reproduce the template (the caller renders each row)."""
    msgs = [{"role": r, "content": _slot(i)} for i, r in enumerate(roles)]
    try:
        rendered = assistant_edges(tok, msgs)
    except Exception:  # noqa: BLE001 - a template that refuses this shape: rendering each row raises the proper error
        return None
    if rendered is None:
        return None
    full, edges = rendered
    parts = _SLOT.split(full)
    pieces, slots = tuple(parts[0::2]), tuple(int(x) for x in parts[1::2])
    if any(c in p for p in pieces for c in _SENTINELS):  # the template altered a content
        return None
    marks = []
    for edge in edges:  # skeleton position -> (slots wholly before it, literal characters before it)
        pos = 0
        for k, piece in enumerate(pieces):
            if edge <= pos + len(piece):
                marks.append((k, edge - pos + sum(map(len, pieces[:k]))))
                break
            pos += len(piece) + len(_slot(slots[k]))
            if edge < pos:  # an edge inside a content: not expressible
                return None
    return _Skeleton(pieces, slots, tuple(marks))


class SpanRenderer:
    """`trained_spans` for many rows: each conversation shape's template is rendered once, rows by substitution.

    The first row of every shape is also rendered directly and compared; a shape whose template the skeleton does
    not reproduce, and a row whose content holds the sentinel characters, take the direct path.
    """

    def __init__(self, tok) -> None:
        self.tok = tok
        self._shapes: dict[tuple[str, ...], _Skeleton | None] = {}

    def __call__(self, example: Example) -> tuple[str, list[tuple[int, int]]]:
        if example.text is not None:
            return trained_spans(self.tok, example)
        msgs = example.messages
        roles = tuple(m["role"] for m in msgs)
        contents = [m["content"] for m in msgs]
        if any(len(m) != 2 or not isinstance(c, str) or _SENTINELS[0] in c or _SENTINELS[1] in c
               for m, c in zip(msgs, contents)):
            return trained_spans(self.tok, example)
        if roles not in self._shapes:
            skel = _skeleton(self.tok, roles) if getattr(self.tok, "chat_template", None) else None
            direct = trained_spans(self.tok, example)
            self._shapes[roles] = skel if skel is not None and _fill(skel, contents) == direct else None
            return direct
        skel = self._shapes[roles]
        return trained_spans(self.tok, example) if skel is None else _fill(skel, contents)


def _fill(skel: _Skeleton, contents: list[str]) -> tuple[str, list[tuple[int, int]]]:
    fill = [contents[i] for i in skel.slots]
    parts = [skel.pieces[0]]
    cum = [0]  # characters of content before each slot
    for text, piece in zip(fill, skel.pieces[1:]):
        parts += (text, piece)
        cum.append(cum[-1] + len(text))
    edges = [lit + cum[k] for k, lit in skel.marks]
    return "".join(parts), list(zip(edges[0::2], edges[1::2]))


def render_example(tok, example: Example, max_length: int, truncation: str = "keep-answer") -> RenderedExample:
    f = features(tok, example, max_length, truncation)
    segments: list[tuple[str, bool]] = []
    pos = 0
    for (start, end), label in zip(f.offsets, f.labels):
        trained = label != -100
        if start > pos:  # characters the tokenizer folded into no token (rare): show them untrained
            _append(segments, f.text[pos:start], False)
        _append(segments, f.text[start:end], trained)
        pos = max(pos, end)
    return RenderedExample(segments, len(f.input_ids), f.n_trained, f.truncated, f.outcome, f.n_before,
                           f.cut_tokens, f.dropped_turns, f.answer_lost)


def _append(segments: list[tuple[str, bool]], text: str, trained: bool) -> None:
    if not text:
        return
    if segments and segments[-1][1] == trained:
        segments[-1] = (segments[-1][0] + text, trained)
    else:
        segments.append((text, trained))


def length_stats(tok, examples: list[Example], max_length: int) -> LengthStats:
    """Token lengths of the rows as written, and what each --truncation would do with the ones over max length."""
    spans_of, lengths = SpanRenderer(tok), []
    right_lost = right_rows = right_empty = cut_rows = answer_cut_rows = answer_cut_tokens = 0
    for start in range(0, len(examples), 1000):  # batched like tokenize.encode: the Rust tokenizer uses every core
        batch = examples[start:start + 1000]
        rendered = [spans_of(e) for e in batch]
        enc = tok([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True,
                  return_attention_mask=False, return_token_type_ids=False)
        for ex, (text, spans), ids, offsets in zip(batch, rendered, enc["input_ids"], enc["offset_mapping"]):
            lengths.append(len(ids))
            if len(ids) <= max_length:
                continue
            labels = label_tokens(ids, offsets, spans)
            lost = sum(1 for x in labels[max_length:] if x != -100)
            right_lost += lost
            right_rows += lost > 0
            right_empty += all(x == -100 for x in labels[:max_length])
            f = fit(tok, ex, max_length, "keep-answer", spans_of=spans_of, encoded=(text, ids, offsets, labels))
            cut_rows += f.cut_tokens > 0
            if f.outcome in ("answer-cut", "dropped"):
                answer_cut_rows += 1
                answer_cut_tokens += f.answer_lost
    lengths.sort()
    if not lengths:
        return LengthStats(0, 0, 0, 0, 0, 0, max_length)
    p95 = lengths[min(len(lengths) - 1, int(round(0.95 * (len(lengths) - 1))))]
    return LengthStats(len(lengths), lengths[0], int(statistics.median(lengths)), p95, lengths[-1],
                       sum(1 for n in lengths if n > max_length), max_length, right_lost, right_rows, right_empty,
                       cut_rows, answer_cut_rows, answer_cut_tokens)
