"""Which part of a rendered conversation is the answer: the character spans that carry the loss, their tokens, and
the token that ends an assistant turn.

The mask is built from character spans, not from template tags: for each assistant turn the template is
rendered up to the generation prompt and up to the end of that turn; the characters in between (the answer and
its end-of-turn token) are trained, everything else is not. This works for templates without
`{% generation %}` markers (Qwen2.5's, SmolLM2's), where `assistant_only_loss` silently goes wrong.
"""
from __future__ import annotations

from bisect import bisect_left
from itertools import islice
from operator import itemgetter, le

from core.data.examples import Example
from core.errors import InputError, Problem


def stop_token_ids(tok) -> list[int]:
    """The tokens that end an assistant turn: the tokenizer's EOS and the special token its chat template closes a
    turn with (<|im_end|> in ChatML, <|eot_id|> in Llama 3's), which a base tokenizer or a GGUF conversion may not
    call EOS. Generation that stops at EOS alone runs past a right answer into a new turn ("…\nassistant\n…")."""
    from jinja2 import TemplateError

    ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
    if not getattr(tok, "chat_template", None):
        return ids
    mark = "Zq7Xv"
    try:
        text = _template(tok, [{"role": "user", "content": "q"}, {"role": "assistant", "content": mark}],
                         generation_prompt=False)
    except (TemplateError, ValueError, TypeError):
        return ids  # a template that refuses this minimal conversation: EOS is all we know
    special = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}) or {})
    tail = tok(text[text.rfind(mark) + len(mark):], add_special_tokens=False)["input_ids"]
    end = next((t for t in tail if t in special), None)
    return ids + [end] if end is not None and end not in ids else ids


def _template(tok, messages, *, generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_edges(tok, msgs: list[dict]) -> tuple[str, list[int]] | None:
    """The rendered conversation and the [start, end) character edges of each assistant turn, from prefix renders;
    None when the template is not prefix-stable (the answer cannot be located)."""
    full = _template(tok, msgs, generation_prompt=False)
    edges: list[int] = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _template(tok, msgs[:i], generation_prompt=True) if i else ""
        upto = _template(tok, msgs[: i + 1], generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(before)):
            return None
        edges += [len(before), len(upto)]
    return full, edges


def trained_spans(tok, example: Example) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the [start, end) character spans that carry the loss."""
    if example.text is not None:
        eos = tok.eos_token or ""
        return example.text + eos, [(0, len(example.text) + len(eos))]
    if not getattr(tok, "chat_template", None):
        raise InputError("this model's tokenizer has no chat template",
                         hint="use an instruct/chat model, or a dataset of plain {\"text\": ...} rows")
    rendered = assistant_edges(tok, example.messages)
    if rendered is None:
        raise InputError(
            "this model's chat template does not render conversations prefix by prefix, so the answer "
            "tokens cannot be located", problems=[Problem("template is not prefix-stable", line=example.line)],
            hint="use another model or a plain text dataset")
    full, edges = rendered
    return full, list(zip(edges[0::2], edges[1::2]))


def label_tokens(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Each token's id where its first character lies in a trained span, else -100.

    Token starts are non-decreasing for every tokenizer we know, so each span covers one contiguous run of tokens,
    found by bisection; should a tokenizer ever report starts out of order, the per-token test is used instead.
    """
    starts = list(map(itemgetter(0), offsets))
    if not all(map(le, starts, islice(starts, 1, None))):
        return [tid if any(a <= start < b for a, b in spans) else -100 for tid, start in zip(ids, starts)]
    labels = [-100] * len(ids)
    for a, b in spans:
        i, j = bisect_left(starts, a), bisect_left(starts, b)
        labels[i:j] = ids[i:j]
    return labels


# Each message's content is replaced by a numbered sentinel (private-use characters) wrapped in padding that a
# template which trims, escapes or parses content would change: then the rendered "skeleton" of a conversation
# shape (its tuple of roles) holds every content verbatim and any row of that shape renders by substitution.
