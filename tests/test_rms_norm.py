"""torch's fused RMSNorm (core/train/kernels/rms_norm.py) in place of transformers' own: same outputs and gradients."""
from __future__ import annotations

import torch

from core.train.kernels.rms_norm import use_torch_rms_norm


def test_the_patched_norms_give_the_models_outputs_and_gradients(tiny_qwen_dir):
    from transformers import AutoModelForCausalLM

    ids = torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(0))
    results = []
    for patch in (False, True):
        model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen_dir), dtype=torch.float32)
        if patch:
            norms = sum(1 for m in model.modules() if type(m).__name__.endswith("RMSNorm"))
            assert use_torch_rms_norm(model) == norms > 0
            assert use_torch_rms_norm(model) == 0  # once only
        logits = model(input_ids=ids).logits
        logits.float().pow(2).mean().backward()
        norm_grad = model.model.norm.weight.grad.clone()
        results.append((logits.detach(), norm_grad))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert torch.allclose(ga, gb, atol=1e-6, rtol=1e-4)


def test_a_norm_in_another_dtype_than_its_input_keeps_its_own_forward(tiny_qwen_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen_dir), dtype=torch.float32)
    norm = model.model.norm
    x = torch.randn(2, 3, norm.weight.shape[0], dtype=torch.bfloat16)
    want = norm(x)
    use_torch_rms_norm(model)
    got = norm(x)
    assert got.dtype == want.dtype and torch.equal(got, want)
