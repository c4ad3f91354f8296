"""Fused linear cross-entropy for a frozen LM head: the summed loss of `h · Wᵀ` against `y`, with the gradient of
`h` computed in the forward pass, chunk by chunk, so no logits outlive their chunk and none are upcast to fp32.

Why not Liger's (which this replaces): it asks the GPU how many targets are not ignored (`.item()`) at every call,
so each step's CPU waited for the GPU at the loss and started the backward's launches from an idle GPU; and it cuts
the tokens into chunks of ~256 at Qwen2.5-1.5B's vocabulary (64 chunks at 16k tokens, each its own launches and
Python). Here the targets are the trained positions already (core/train/kernels/loss.py), the loss is a sum, and a chunk
holds up to `chunk` tokens (`fused_ce_chunk`): three launches a chunk (the logits product, one Triton kernel that
writes the row's loss and turns its logits into their gradient in place, the input-gradient product).

The head's weight must need no gradient (a frozen, tied embedding: LoRA never trains it). On the CPU (tests) the
same arithmetic runs in PyTorch.
"""
from __future__ import annotations

import torch

BLOCK = 32768  # vocabulary columns a program reads at a time (5 passes over Qwen2.5's 151,936 a row)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """Σ cross-entropy(h·Wᵀ, y) in fp32 (targets below 0 count nothing); h (N × H), W (V × H) frozen, y (N)."""
    if weight.requires_grad:
        raise ValueError("linear_cross_entropy computes no gradient for the head's weight: freeze it")
    return _LinearCE.apply(h.to(weight.dtype), weight, y, max(int(chunk), 1))


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, y, chunk):
        n = h.shape[0]
        loss = torch.zeros(n, dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if h.requires_grad else None
        buffer = h.new_empty(min(chunk, n), weight.shape[0]) if n else None
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            logits = buffer[:end - start]
            torch.mm(h[start:end], weight.t(), out=logits)
            rows_(logits, y[start:end], loss[start:end])  # logits := d loss / d logits
            if grad_h is not None:
                torch.mm(logits, weight, out=grad_h[start:end])
        ctx.save_for_backward(grad_h)
        return loss.sum()

    @staticmethod
    def backward(ctx, grad):
        (grad_h,) = ctx.saved_tensors
        return grad_h * grad.to(grad_h.dtype), None, None, None


def rows_(logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
    """For each row: loss[i] = logsumexp(logits[i]) − logits[i, y[i]], and logits[i] overwritten with
    softmax(logits[i]) − onehot(y[i]) (the loss's gradient); rows whose target is below 0 get 0 and 0."""
    rows, vocab = logits.shape
    if not rows:
        return
    if logits.is_cuda and triton is not None and logits.stride(1) == 1:
        _kernel[(rows,)](logits, logits.stride(0), y, loss, vocab, BLOCK=BLOCK, num_warps=32)
        return
    x = logits.float()
    valid = y >= 0
    target = torch.where(valid, y, torch.zeros_like(y))
    lse = torch.logsumexp(x, dim=1)
    loss.copy_(torch.where(valid, lse - x.gather(1, target[:, None]).squeeze(1), torch.zeros_like(lse)))
    p = torch.exp(x - lse[:, None])
    p[torch.arange(rows, device=p.device), target] -= 1.0
    logits.copy_(p * valid[:, None])


try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds come without Triton: the PyTorch arithmetic above runs instead
    triton = None

if triton is not None:
    @triton.jit
    def _kernel(logits_ptr, stride, y_ptr, loss_ptr, vocab, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * stride
        target = tl.load(y_ptr + row)
        cols = tl.arange(0, BLOCK)
        m = float("-inf")
        s = 0.0
        for off in range(0, vocab, BLOCK):  # online max and sum of exponentials
            x = tl.load(base + off + cols, mask=off + cols < vocab, other=float("-inf")).to(tl.float32)
            new_m = tl.maximum(m, tl.max(x, 0))
            s = s * tl.exp(m - new_m) + tl.sum(tl.exp(x - new_m), 0)
            m = new_m
        lse = m + tl.log(s)
        valid = target >= 0
        safe = tl.where(valid, target, 0)
        x_t = tl.load(base + safe).to(tl.float32)
        tl.store(loss_ptr + row, tl.where(valid, lse - x_t, 0.0))
        for off in range(0, vocab, BLOCK):  # the gradient, over the logits
            mask = off + cols < vocab
            x = tl.load(base + off + cols, mask=mask, other=0.0).to(tl.float32)
            p = tl.exp(x - lse)
            p = tl.where(off + cols == target, p - 1.0, p)
            p = tl.where(valid, p, 0.0)
            tl.store(base + off + cols, p.to(logits_ptr.dtype.element_ty), mask=mask)
