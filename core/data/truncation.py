"""What happens to a row longer than max length (`--truncation`): the one place that decides it.

- keep-answer (default): the answer and the chat template's structure (system prompt, turn markers, end-of-turn
  token) stay whole; the user's text is cut in its middle, its start and end kept, with a visible marker
  `…[1,234 tokens cut]…`. Multi-turn rows keep the last assistant turn whole: earlier user turns are cut first,
  then the oldest exchanges dropped, then the last user turn cut. Only an answer that alone exceeds the budget is
  cut (from its end), and that is counted. GenAptitude's exports put a whole JSON document in `input` and the answer
  last, so this is the difference between learning the answer and learning nothing.
- right: cut at max length from the right (TRL's behaviour): the answer, which comes last, goes first.
- drop: a row longer than max length is left out (Axolotl's behaviour).

Training (`core.data.tokenize`), the preview (`render.render_example`), `check` (`render.length_stats`) and the prompts
of `evaluate` and `chat` all go through `fit` / `fit_prompt`, so they see the same cut.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from core.data.spans import label_tokens, trained_spans

TRUNCATIONS = ("keep-answer", "right", "drop")
MIN_KEEP = 16  # a cut turn keeps at least this many tokens (its start and end): it still says what it was
_ROUNDS = 6  # re-measures of one cut: merges at the cut's edges shift the count by a token or two


def marker(n: int) -> str:
    """What replaces the middle of a cut turn (seen by the model and shown in the preview)."""
    return f"…[{n:,} tokens cut]…"


@dataclass
class Fitted:
    """A row as the model trains on it, and what fitting it into max length did."""

    input_ids: list[int]
    labels: list[int]  # -100 where no loss; all -100 when the row is left out
    text: str
    offsets: list[tuple[int, int]]
    outcome: str = "fits"  # fits | cut (input cut, answer whole) | answer-cut | right | dropped
    n_before: int = 0  # tokens of the row as written
    answer_before: int = 0  # trained tokens of the row as written
    cut_tokens: int = 0  # prompt tokens removed by keep-answer (middle cuts and dropped turns)
    dropped_turns: int = 0
    answer_lost: int = 0  # trained tokens lost (an over-long answer, right-truncation, or a dropped row)
    messages: list[dict] | None = field(default=None, repr=False)  # the conversation as fitted

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != -100)

    @property
    def truncated(self) -> bool:
        return self.outcome != "fits"


@dataclass
class FitCounts:
    """What fitting did to a split's rows (training says it in the log)."""

    rows: int = 0
    cut: int = 0  # keep-answer: input cut in the middle, answer whole
    answer_cut: int = 0  # keep-answer: the answer alone was too long and lost its end
    right: int = 0  # right-truncated and kept
    dropped: int = 0  # left out: no answer token within max length, or --truncation drop
    answer_lost: int = 0  # answer tokens lost in the rows kept

    def add(self, f: Fitted) -> None:
        self.rows += 1
        if f.outcome == "dropped":
            self.dropped += 1
            return
        self.cut += f.outcome == "cut" or (f.outcome == "answer-cut" and f.cut_tokens > 0)
        self.answer_cut += f.outcome == "answer-cut"
        self.right += f.outcome == "right"
        self.answer_lost += f.answer_lost

    def __iadd__(self, other: "FitCounts") -> "FitCounts":
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def log_lines(self, max_length: int, truncation: str) -> list[tuple[str, str]]:
        """(message, level) lines for the run log; none when every row fits."""
        out = []
        if self.cut:
            out.append((f"{self.cut:,} row(s) longer than --max-length {max_length:,}: input cut in the middle "
                        "(…[N tokens cut]…), answer kept whole", "info"))
        if self.answer_cut:
            out.append((f"{self.answer_cut:,} answer(s) are longer than --max-length {max_length:,} by themselves: "
                        f"{self.answer_lost:,} answer tokens cut from their end", "warning"))
        if self.right:
            out.append((f"{self.right:,} row(s) cut from the right at --max-length {max_length:,} "
                        f"(--truncation right): {self.answer_lost:,} answer tokens lost", "warning"))
        if self.dropped:
            why = ("longer than --max-length (--truncation drop)" if truncation == "drop"
                   else f"have no answer token left within --max-length {max_length:,}")
            out.append((f"{self.dropped:,} row(s) {why} and are left out", "warning"))
        return out


SpansOf = Callable  # example -> (rendered text, trained character spans)


def _encode(tok, text: str, spans) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
              return_token_type_ids=False)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    return ids, offsets, label_tokens(ids, offsets, spans)


def fit(tok, example, max_length: int, truncation: str = "keep-answer", *, spans_of: SpansOf | None = None,
        encoded: tuple | None = None) -> Fitted:
    """The row fitted into `max_length` tokens by the `truncation` rule.

    `encoded` (text, ids, offsets, labels) skips re-tokenising a row the caller already tokenised.
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, not {truncation!r}")
    spans_of = spans_of or (lambda e: trained_spans(tok, e))
    if encoded is None:
        text, spans = spans_of(example)
        encoded = (text, *_encode(tok, text, spans))
    text, ids, offsets, labels = encoded
    answer = sum(1 for x in labels if x != -100)
    base = dict(n_before=len(ids), answer_before=answer, messages=example.messages or None)
    if len(ids) <= max_length:
        return Fitted(ids, labels, text, offsets, **base)
    if truncation == "drop":
        return Fitted(ids[:max_length], [-100] * max_length, text, offsets[:max_length], "dropped",
                      answer_lost=answer, **base)
    if truncation == "right" or example.text is not None:  # plain text: all of it is the answer
        return _right(text, ids, offsets, labels, max_length, answer, base,
                      "right" if truncation == "right" else "answer-cut")
    msgs, cut, dropped = shrink(tok, example.messages, max_length, _row_length(tok, example, spans_of))
    from core.data.examples import Example

    fitted = Example(example.line, msgs, raw=example.raw)
    text, spans = spans_of(fitted)
    ids, offsets, labels = _encode(tok, text, spans)
    base["messages"] = msgs
    if len(ids) > max_length:  # the answer alone (with the template around it) exceeds the budget
        out = _right(text, ids, offsets, labels, max_length, answer, base, "answer-cut")
        out.cut_tokens, out.dropped_turns = cut, dropped
        return out
    return Fitted(ids, labels, text, offsets, "cut", cut_tokens=cut, dropped_turns=dropped, **base)


def _right(text, ids, offsets, labels, max_length, answer, base, outcome) -> Fitted:
    kept = labels[:max_length]
    left = sum(1 for x in kept if x != -100)
    return Fitted(ids[:max_length], kept, text, offsets[:max_length], outcome if left else "dropped",
                  answer_lost=answer - left, **base)


def _row_length(tok, example, spans_of) -> Callable[[list[dict]], int]:
    from core.data.examples import Example

    def length(msgs: list[dict]) -> int:
        text, _ = spans_of(Example(example.line, msgs, raw=example.raw))
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return length


def fit_prompt(tok, messages: list[dict], max_length: int) -> tuple[list[dict], int]:
    """A prompt (ending with the user turn to answer) cut by the same rule to fit `max_length` tokens with the
    generation prompt; returns the messages and the prompt tokens cut. For `chat`, where no answer is known."""
    def length(msgs: list[dict]) -> int:
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    msgs, cut, _ = shrink(tok, messages, max_length, length)
    return msgs, cut


def shrink(tok, messages: list[dict], budget: int, length: Callable[[list[dict]], int]) -> tuple[list[dict], int, int]:
    """The conversation cut until `length(messages) <= budget`, or as far as the rule allows; the last assistant turn
    (if last) and the system prompt are never touched. Returns (messages, tokens cut, turns dropped)."""
    msgs = [dict(m) for m in messages]
    n = length(msgs)
    if n <= budget:
        return msgs, 0, 0
    last = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last is None:
        return msgs, 0, 0
    first = 0
    while first < last and msgs[first]["role"] == "system":
        first += 1
    cut = dropped = 0
    for i in range(first, last):  # 1. earlier user turns, oldest first
        if n > budget and msgs[i]["role"] == "user":
            msgs, n2, removed = _cut_turn(tok, msgs, i, n, budget, length)
            cut, n = cut + removed, n2
    while n > budget and first < last:  # 2. the oldest exchange: a user turn and what follows up to the next one
        nxt = next((j for j in range(first + 1, last) if msgs[j]["role"] == "user"), last)
        msgs = msgs[:first] + msgs[nxt:]
        dropped, last = dropped + nxt - first, last - (nxt - first)
        n2 = length(msgs)
        cut, n = cut + (n - n2), n2
    if n > budget:  # 3. the user turn the answer replies to
        msgs, n, removed = _cut_turn(tok, msgs, last, n, budget, length)
        cut += removed
    return msgs, cut, dropped


def _cut_turn(tok, msgs: list[dict], i: int, n: int, budget: int,
              length: Callable[[list[dict]], int]) -> tuple[list[dict], int, int]:
    """Message i with the middle of its content replaced by the marker, enough to bring `n` under `budget` if the
    turn allows (it keeps MIN_KEEP tokens). Returns (messages, new length, content tokens removed)."""
    content = msgs[i]["content"]
    offsets = tok(content, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    total = len(offsets)
    removable = total - MIN_KEEP
    if removable <= 0:
        return msgs, n, 0
    want = n - budget + len(tok(marker(n - budget), add_special_tokens=False)["input_ids"])
    best = (msgs, n, 0)
    for _ in range(_ROUNDS):
        remove = min(removable, max(want, 1))
        keep = total - remove
        head = (keep + 1) // 2
        tail = keep - head
        start, end = offsets[head][0], (offsets[total - tail][0] if tail else len(content))
        trial = msgs[:i] + [{**msgs[i], "content": content[:start] + marker(remove) + content[end:]}] + msgs[i + 1:]
        n2 = length(trial)
        best = (trial, n2, remove)
        if n2 <= budget or remove == removable:
            break
        want = remove + (n2 - budget)
    return best


# -- what `check`, the Dataset tab and the Overview say about long rows -------------------------------------------


def long_rows_text(stats, truncation: str) -> list[str]:
    """One to three sentences: how many rows exceed max length, what `truncation` does with them, and what plain
    right-truncation would have lost. `stats` is a `render.LengthStats`."""
    n, over, ml = stats.count, stats.over_max, stats.max_length
    if not over:
        return [f"all {n:,} rows fit max length {ml:,}"]
    head = f"{over:,} of {n:,} rows are longer than max length {ml:,}"
    lost = (f"plain right-truncation would lose {stats.right_lost_tokens:,} answer tokens"
            + (f"; {stats.right_empty_rows:,} rows would keep no answer token" if stats.right_empty_rows else ""))
    if truncation == "keep-answer":
        lines = [f"{head}: their input is cut in the middle (marked …[N tokens cut]…), every answer kept whole"
                 if not stats.answer_cut_rows else
                 f"{head}: their input is cut in the middle (marked …[N tokens cut]…); "
                 f"{stats.answer_cut_rows:,} answers are longer than max length by themselves and lose "
                 f"{stats.answer_cut_tokens:,} tokens from their end"]
        return lines + [lost]
    if truncation == "right":
        gone = (f"; {stats.right_empty_rows:,} rows keep no answer token and are left out"
                if stats.right_empty_rows else "")
        return [f"{head}: cut from the right (--truncation right): {stats.right_lost_tokens:,} answer tokens lost"
                + gone, "--truncation keep-answer would keep every answer whole"]
    return [f"{head}: left out (--truncation drop), {n - over:,} rows train",
            "--truncation keep-answer would keep them, with their input cut in the middle", lost]


def suggested_max_length(tokens: int, step: int = 64) -> int:
    """A max length that holds `tokens`, rounded up to a multiple of `step`."""
    return max(step, -(-tokens // step) * step)
