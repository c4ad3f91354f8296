"""Answers stop where the chat template ends a turn, even when the tokenizer calls another token EOS.

On an H200 the bundled SmolLM2, converted from its GGUF by transformers 5.17, had `<|endoftext|>` as EOS while its
template closes turns with `<|im_end|>`: right answers ran on into "\\nassistant\\n…", and `evaluate` and the
after-run check scored them as misses (exact match 0.80 where the answers were 0.975 right).
"""
from __future__ import annotations

import pytest

from core.adapter.evaluate import generate_replies
from core.data.spans import stop_token_ids
from tests.tinymodels import build_tokenizer, dataset_texts


@pytest.fixture(scope="module")
def eot_tok():
    """A ChatML tokenizer whose EOS is <|endoftext|> (as a GGUF conversion may leave it), not <|im_end|>."""
    tok = build_tokenizer(dataset_texts()[:200])
    tok.eos_token = "<|endoftext|>"
    tok.pad_token = "<|endoftext|>"
    return tok


def test_the_template_end_of_turn_token_stops_generation_too(eot_tok, smollm2):
    im_end = eot_tok.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(eot_tok) == [eot_tok.eos_token_id, im_end]
    # A tokenizer whose EOS already ends the turn: one id, not the same one twice.
    assert stop_token_ids(smollm2) == [smollm2.convert_tokens_to_ids("<|im_end|>")]


def _model_that_answers_nothing_then_rambles(tok):
    """A real tiny Llama whose greedy next token is <|im_end|> after any ordinary token, then "A" for ever:
    attention and MLP write nothing (o_proj, down_proj = 0), so the logits are the current token's embedding
    against all embeddings (tied), which are set to send ordinary tokens to <|im_end|> and <|im_end|> to "A"."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id))
    u, w = torch.zeros(32), torch.zeros(32)
    u[0], w[1] = 1.0, 1.0
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.copy_(u + 0.01 * torch.randn_like(emb))
        emb[tok.convert_tokens_to_ids("<|im_end|>")] = 10 * u - 5 * w
        emb[tok.convert_tokens_to_ids("A")] = -40 * w
    return model.eval()


def test_an_answer_ends_at_the_end_of_turn_token(eot_tok):
    model = _model_that_answers_nothing_then_rambles(eot_tok)
    conversation = [[{"role": "user", "content": "Quel est le statut de REQ-1 ?"}]]
    # Without the template's end of turn this reply would be "AAAA…" (8 new tokens after <|im_end|>).
    assert generate_replies(eot_tok, model, conversation, max_new_tokens=8) == [""]


def test_an_answer_the_time_limit_stopped_is_unfinished_not_wrong(tiny_model_dir):
    """The after-run check's time limit stops generation mid-answer on a busy machine; such rows are left out of its
    score (core/train/learncheck.py) instead of counting as misses, so `generate_replies` says which they are."""
    from transformers import AutoModelForCausalLM

    from core.models import tokenizer_from

    tok = tokenizer_from(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    conversation = [[{"role": "user", "content": "Quel est le statut de REQ-1 ?"}]]
    whole: list[bool] = []
    generate_replies(tok, model, conversation, max_new_tokens=6, cut=whole)
    stopped: list[bool] = []
    generate_replies(tok, model, conversation, max_new_tokens=64, max_time=1e-9, cut=stopped)
    assert (whole, stopped) == ([False], [True])
