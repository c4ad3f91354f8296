"""The answer-only loss's forward skips transformers' packed-rows check (a host sync a step on the GPU) exactly when
the rows cannot be packed, and gives the same loss and gradients; with position_ids given the check still runs."""
from __future__ import annotations

import pytest
import torch

from core.train.kernels.loss import answer_only_loss, loss_positions


@pytest.fixture
def model_and_batch(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    ids = torch.randint(3, 97, (3, 17))
    labels = ids.clone()
    labels[1, 11:] = -100  # a right-padded row
    labels[:, :5] = -100  # the prompt
    return model, {"input_ids": ids, "labels": labels, "loss_index": loss_positions(labels)}


@pytest.fixture
def checks(monkeypatch):
    """Every call that reaches transformers' own check, counted."""
    from transformers import masking_utils

    calls = []
    original = masking_utils.find_packed_sequence_indices

    def counted(position_ids):
        calls.append(position_ids.shape)
        return original(position_ids)

    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", counted)
    return calls


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = answer_only_loss(model, batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_rows_without_a_mask_skip_the_check_with_the_same_loss_and_gradients(model_and_batch, checks):
    model, batch = model_and_batch
    loss, grads = _loss_and_grads(model, batch)
    assert checks == []  # no mask, no position_ids: 0..n-1 in every row, never packed

    model.zero_grad()  # the reference: the decoder's own forward, which asks the check
    out = model.model(input_ids=batch["input_ids"], use_cache=False).last_hidden_state
    assert len(checks) == 1
    h = out.reshape(-1, out.shape[-1]).index_select(0, batch["loss_index"])
    y = batch["labels"].reshape(-1).index_select(0, batch["loss_index"] + 1)
    ref_loss = torch.nn.functional.cross_entropy(model.lm_head(h).float(), y)
    ref_loss.backward()
    ref_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert torch.allclose(loss, ref_loss.detach(), atol=1e-6)
    assert len(grads) == len(ref_grads)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, ref_grads))


def test_given_positions_or_a_mask_keep_the_check(model_and_batch, checks):
    model, batch = model_and_batch
    packed = dict(batch, position_ids=torch.tensor([list(range(9)) + list(range(8))] * 3))
    answer_only_loss(model, packed)
    assert len(checks) == 1  # two sequences in a row: transformers must see it
