"""The fused RoPE (core.train.kernels.rope) against transformers' own: outputs and gradients on CUDA (run on a GPU box:
`python -m pytest tests/test_rope.py`), and transformers' own path wherever the kernel does not apply."""
from __future__ import annotations

import pytest
import torch
from transformers.models.qwen2 import modeling_qwen2

from core.train.kernels import rope

cuda = pytest.mark.skipif(not torch.cuda.is_available() or rope.triton is None, reason="needs CUDA and Triton")
HF_ROPE = modeling_qwen2.apply_rotary_pos_emb


def _inputs(dtype, device, batch=3, seq=37, hq=12, hk=2, dim=128, cos_batch=1):
    """q and k as the attention layer makes them: views of one projection output, (batch, heads, tokens, dim)."""
    torch.manual_seed(0)
    qkv = torch.randn(batch, seq, (hq + 2 * hk) * dim, dtype=dtype, device=device)
    q = qkv[..., :hq * dim].view(batch, seq, hq, dim).transpose(1, 2)
    k = qkv[..., hq * dim:(hq + hk) * dim].view(batch, seq, hk, dim).transpose(1, 2)
    angles = torch.randn(cos_batch, seq, dim // 2, device=device)
    emb = torch.cat([angles, angles], dim=-1)
    return q, k, emb.cos().to(dtype), emb.sin().to(dtype)


@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("cos_batch", [1, 3])
def test_outputs_and_gradients_match_transformers(dtype, tol, cos_batch):
    q, k, cos, sin = _inputs(dtype, "cuda", cos_batch=cos_batch)
    assert rope.fits(q, k, cos, sin, 1)
    q1, k1 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    q2, k2 = q.detach().float().requires_grad_(), k.detach().float().requires_grad_()
    fq, fk = rope._Rope.apply(q1, k1, cos, sin)
    rq, rk = HF_ROPE(q2, k2, cos.float(), sin.float())  # the reference in fp32
    assert fq.dtype == dtype and fq.shape == rq.shape and fk.shape == rk.shape
    assert fq.stride() == q.new_empty(3, 37, 12, 128).transpose(1, 2).stride()  # the projection's layout
    torch.testing.assert_close(fq.float(), rq, atol=tol, rtol=tol)
    torch.testing.assert_close(fk.float(), rk, atol=tol, rtol=tol)
    gq, gk = torch.randn_like(rq), torch.randn_like(rk)
    ((fq.float() * gq).sum() + (fk.float() * gk).sum()).backward()
    ((rq * gq).sum() + (rk * gk).sum()).backward()
    torch.testing.assert_close(q1.grad.float(), q2.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(k1.grad.float(), k2.grad, atol=tol, rtol=tol)


@cuda
def test_a_model_with_the_fused_rope_gives_the_same_loss_and_gradients(monkeypatch):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=97, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).cuda()
    ids = torch.randint(0, 97, (2, 33), device="cuda")

    def loss_and_grads():
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    before = loss_and_grads()
    monkeypatch.setattr(modeling_qwen2, "apply_rotary_pos_emb", HF_ROPE)  # restored after the test
    assert rope.use_fused_rope(model)
    assert getattr(modeling_qwen2.apply_rotary_pos_emb, "fused_rope", False)
    after = loss_and_grads()
    torch.testing.assert_close(after[0], before[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(after[1], before[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_tensors_the_kernel_does_not_take_run_transformers_rope(monkeypatch):
    """CPU tensors (and any call outside the kernel's case) get transformers' own result, through the same
    wrapper the model's module gets."""
    q, k, cos, sin = _inputs(torch.float32, "cpu")
    assert not rope.fits(q, k, cos, sin, 1)
    wrapped = rope.fused_rope(HF_ROPE)
    for got, want in zip(wrapped(q, k, cos, sin), HF_ROPE(q, k, cos, sin)):
        assert torch.equal(got, want)
    for got, want in zip(wrapped(q.transpose(1, 2), k.transpose(1, 2), cos, sin, unsqueeze_dim=2),
                         HF_ROPE(q.transpose(1, 2), k.transpose(1, 2), cos, sin, unsqueeze_dim=2)):
        assert torch.equal(got, want)


def test_the_model_module_gets_the_wrapper_once_and_only_with_triton(monkeypatch):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    monkeypatch.setattr(modeling_qwen2, "apply_rotary_pos_emb", HF_ROPE)
    monkeypatch.setattr(rope, "triton", None)
    assert not rope.use_fused_rope(model)  # no Triton: transformers' RoPE stays
    assert modeling_qwen2.apply_rotary_pos_emb is HF_ROPE
    monkeypatch.setattr(rope, "triton", object())
    assert rope.use_fused_rope(model)
    wrapped = modeling_qwen2.apply_rotary_pos_emb
    assert wrapped is not HF_ROPE and wrapped.fused_rope
    assert rope.use_fused_rope(model) and modeling_qwen2.apply_rotary_pos_emb is wrapped  # not wrapped twice


def test_only_the_half_split_rope_is_replaced(monkeypatch):
    """Models that pair neighbouring dimensions (Cohere, GPT-J) or otherwise compute another RoPE keep their own
    function: the kernel computes the half-split one of Llama/Qwen2/Mistral/Gemma."""
    import sys
    import types

    from transformers.models.cohere import modeling_cohere
    from transformers.models.llama import modeling_llama

    assert rope.computes_half_split_rope(HF_ROPE) and rope.computes_half_split_rope(modeling_llama.apply_rotary_pos_emb)
    assert not rope.computes_half_split_rope(modeling_cohere.apply_rotary_pos_emb)  # interleaved pairs

    fake = types.ModuleType("fake_interleaved_model")
    fake.apply_rotary_pos_emb = modeling_cohere.apply_rotary_pos_emb
    FakeAttention = type("FakeAttention", (torch.nn.Module,), {"__module__": fake.__name__})
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(rope, "triton", object())
    assert not rope.use_fused_rope(torch.nn.Sequential(FakeAttention()))
    assert fake.apply_rotary_pos_emb is modeling_cohere.apply_rotary_pos_emb
