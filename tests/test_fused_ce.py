"""Liger's fused linear cross-entropy against the chunked LM-head loss: same loss, same gradients (CUDA only).

Runs on a GPU box with liger-kernel (`python -m pytest tests/test_fused_ce.py`); skipped elsewhere, including CI.
"""
from __future__ import annotations

import pytest
import torch

from core.train.loss import _chunked_ce, _fused_ce

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (Triton kernels)")


@cuda
@pytest.mark.parametrize("n", [1, 777, 5000])
def test_fused_matches_chunked_loss_and_gradient(n):
    pytest.importorskip("liger_kernel")
    torch.manual_seed(0)
    vocab, hidden = 151_936, 1536
    head = torch.nn.Linear(hidden, vocab, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
    h0 = torch.randn(n, hidden, device="cuda", dtype=torch.bfloat16)
    y = torch.randint(0, vocab, (n,), device="cuda")
    grads, losses = [], []
    for fn in (lambda h: _chunked_ce(head, h, y, 1024), lambda h: _fused_ce(head, h, y)):
        h = h0.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fn(h) / n
        loss.backward()
        losses.append(loss.item())
        grads.append(h.grad.float())
    assert losses[1] == pytest.approx(losses[0], rel=2e-3)
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0).item()
    assert cos > 0.999
    assert (grads[1].norm() / grads[0].norm()).item() == pytest.approx(1.0, rel=1e-2)
