"""The fused linear cross-entropy (core.train.kernels.cross_entropy) against the chunked LM-head loss: same loss, same
gradients. On the CPU its PyTorch arithmetic (CI); on a GPU box its Triton kernel too
(`python -m pytest tests/test_fused_ce.py`)."""
from __future__ import annotations

import pytest
import torch

from core.train.kernels.cross_entropy import linear_cross_entropy
from core.train.kernels.loss import _chunked_ce

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (Triton kernels)")


def _both(head, h0, y, chunk, autocast):
    grads, losses = [], []
    for fn in (lambda h: _chunked_ce(head, h, y, 1024), lambda h: linear_cross_entropy(h, head.weight, y, chunk)):
        h = h0.clone().requires_grad_(True)
        with torch.autocast(h0.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = fn(h) / len(y)
        loss.backward()
        losses.append(loss.item())
        grads.append(h.grad.float())
    return losses, grads


@pytest.mark.parametrize("n,chunk", [(1, 1024), (37, 8), (40, 40), (100, 1024)])
def test_the_pytorch_path_matches_the_chunked_loss_and_gradient(n, chunk):
    torch.manual_seed(0)
    vocab, hidden = 300, 16
    head = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)
    (a, b), (ga, gb) = _both(head, torch.randn(n, hidden), torch.randint(0, vocab, (n,)), chunk, autocast=False)
    assert b == pytest.approx(a, rel=1e-5)
    assert torch.allclose(ga, gb, atol=1e-6, rtol=1e-4)


def test_a_trained_head_is_refused():
    head = torch.nn.Linear(4, 10, bias=False)
    with pytest.raises(ValueError, match="freeze"):
        linear_cross_entropy(torch.randn(2, 4), head.weight, torch.tensor([1, 2]), 8)


@cuda
@pytest.mark.parametrize("n,chunk", [(1, 1024), (777, 1024), (5000, 1024), (5000, 4096), (20000, 4096), (777, 256)])
def test_fused_matches_chunked_loss_and_gradient(n, chunk):
    torch.manual_seed(0)
    vocab, hidden = 151_936, 1536
    head = torch.nn.Linear(hidden, vocab, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
    h0 = torch.randn(n, hidden, device="cuda", dtype=torch.bfloat16)
    (a, b), (ga, gb) = _both(head, h0, torch.randint(0, vocab, (n,), device="cuda"), chunk, autocast=True)
    assert b == pytest.approx(a, rel=2e-3)
    cos = torch.nn.functional.cosine_similarity(ga.flatten(), gb.flatten(), dim=0).item()
    assert cos > 0.999
    assert (gb.norm() / ga.norm()).item() == pytest.approx(1.0, rel=1e-2)


@cuda
def test_the_kernel_skips_ignored_targets():
    from core.train.kernels.cross_entropy import rows_

    logits = torch.randn(3, 70_000, device="cuda", dtype=torch.bfloat16)
    y = torch.tensor([5, -100, 69_999], device="cuda")
    loss = torch.zeros(3, device="cuda")
    want = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
    rows_(logits, y, loss)
    assert torch.allclose(loss, want, rtol=1e-3)
    assert logits[1].abs().max().item() == 0
    assert logits[0].float().sum().abs().item() < 1e-2  # softmax − onehot sums to 0
