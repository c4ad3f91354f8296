"""`fused_lora_grad`: each LoRA projection is one autograd node whose backward writes the LoRA term of the input
gradient into the base layer's. Same gradients as autograd's own graph, on a plain Linear and on bitsandbytes NF4."""
from __future__ import annotations

import pytest
import torch

from tests.test_fast_path import assert_learned_the_same, run


def _peft_pair(seed: int = 0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = torch.nn.Sequential(torch.nn.Linear(32, 96), torch.nn.SiLU(), torch.nn.Linear(96, 16, bias=False))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=12, target_modules=["0", "2"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # B starts at zero: make the adapter contribute to every gradient
    return model


def _grads(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return out.detach(), x.grad, grads


def test_one_node_backward_gives_autograds_gradients():
    from core.train.kernels.fast_lora import fuse_lora_forward

    model = _peft_pair()
    x = torch.randn(3, 7, 32)
    out_ref, dx_ref, g_ref = _grads(model, x)
    assert fuse_lora_forward(model, grad=True) == 2
    out, dx, g = _grads(model, x)
    runs = []
    for m in model.modules():
        if hasattr(m, "base_layer"):
            m.base_layer.register_forward_hook(lambda *a: runs.append(1))
    node = model(x.requires_grad_(True)).grad_fn
    assert type(node).__name__ == "LoraProjectionBackward", node  # the fused node is the one that ran
    assert len(runs) == 2  # each base projection ran once in the forward, inside the fused node
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-5, atol=1e-6 * dx_ref.abs().max().item())  # base + LoRA input gradient, accumulated in one buffer
    assert g.keys() == g_ref.keys() and len(g) == 4
    for name in g:
        scale = g_ref[name].abs().max().item()  # products summed in another order: rounding at that scale
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-5, atol=1e-6 * scale, msg=name)


def test_under_bf16_autocast_with_fp32_lora_weights_as_the_gpu_presets_run_it():
    """The GPU presets' case on the CPU: bf16 autocast, fp32 LoRA weights (AdamW's master copy). The one-node path
    casts A and B once and keeps them for backward; its gradients are autograd's within bf16 rounding, and A's and
    B's come back in fp32."""
    from core.train.kernels.fast_lora import fuse_lora_forward

    model = _peft_pair(2)
    x = torch.randn(4, 9, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ref, dx_ref, g_ref = _grads(model, x)
        fuse_lora_forward(model, grad=True)
        assert type(model(x.clone().requires_grad_(True)).grad_fn).__name__ == "LoraProjectionBackward"
        out, dx, g = _grads(model, x)
    assert out.dtype == out_ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, out_ref, rtol=2e-2, atol=2e-2 * out_ref.abs().max().item())
    torch.testing.assert_close(dx, dx_ref, rtol=3e-2, atol=3e-2 * dx_ref.abs().max().item())
    for name in g:
        assert g[name].dtype == torch.float32, name
        scale = g_ref[name].abs().max().item()
        torch.testing.assert_close(g[name], g_ref[name], rtol=3e-2, atol=3e-2 * scale, msg=name)


def test_input_without_grad_skips_its_gradient_and_still_trains_lora():
    from core.train.kernels.fast_lora import fuse_lora_forward

    model = _peft_pair(1)
    fuse_lora_forward(model, grad=True)
    x = torch.randn(2, 5, 32)  # the first layer's input: embeddings, frozen
    model(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_fused_grad_learns_the_same_as_autograd(quantization, tiny_model_dir, small_dataset, tmp_path,
                                                monkeypatch):
    from core.train.kernels import fast_lora

    calls = []
    backward = fast_lora.LoraProjection.backward
    monkeypatch.setattr(fast_lora.LoraProjection, "backward",
                        staticmethod(lambda ctx, grad: calls.append(1) or backward(ctx, grad)))
    ref = run(tiny_model_dir, small_dataset, tmp_path / "ref", quantization=quantization)
    assert not calls
    got = run(tiny_model_dir, small_dataset, tmp_path / "fused", quantization=quantization, fused_lora_grad=True)
    assert len(calls) >= 12 * 14  # every step, every adapted projection of the 2 layers (7 each)
    assert_learned_the_same(ref, got)
