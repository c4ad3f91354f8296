"""SwiGLU on a fused gate/up output: `gu` is (rows × 2I), gate in its first I columns and up in the last I, as the
one gate/up product of core/train/kernels/fused_blocks.py writes it. h = silu(gate) · up, computed in fp32.

On CUDA one Triton kernel each way; the backward writes d(gate) and d(up) over `gu` in place, so the gradient is
laid out as the fused product's input gradient needs it, without another (rows × 2I) tensor. Elsewhere (CPU tests)
the same arithmetic in PyTorch. Liger's SwiGLU kernel, which these replace on this path, takes gate and up as two
tensors with one row stride: on the halves of one tensor it would copy both first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BLOCK = 1024  # columns per program: 9 programs a row at Qwen2.5-1.5B's I = 8960


def swiglu(gu: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up for a (rows × 2I) tensor; returns (rows × I) in gu's dtype."""
    rows, width = gu.shape
    inter = width // 2
    if gu.is_cuda and triton is not None and gu.is_contiguous():
        h = gu.new_empty(rows, inter)
        _kernels()[0][(rows, triton_cdiv(inter))](gu, h, inter, BLOCK=BLOCK, num_warps=4)
        return h
    g, u = gu.to(_wide(gu)).split(inter, dim=1)
    return (F.silu(g) * u).to(gu.dtype)


def swiglu_backward_(dh: torch.Tensor, gu: torch.Tensor) -> torch.Tensor:
    """Overwrite `gu` with the gradient of swiglu(gu) for the output gradient `dh` (rows × I); returns gu."""
    rows, width = gu.shape
    inter = width // 2
    if gu.is_cuda and triton is not None and gu.is_contiguous() and dh.is_contiguous():
        _kernels()[1][(rows, triton_cdiv(inter))](dh, gu, inter, BLOCK=BLOCK, num_warps=4)
        return gu
    g, u = gu.to(_wide(gu)).split(inter, dim=1)
    d = dh.to(g.dtype)
    sig = torch.sigmoid(g)
    silu = g * sig
    dg, du = d * u * (sig + silu * (1 - sig)), d * silu  # both before writing: g and u may be views of gu
    gu[:, :inter], gu[:, inter:] = dg, du
    return gu


def _wide(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)  # fp32 arithmetic for 16-bit tensors, as the kernels


def triton_cdiv(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK


def _kernels():
    """The two Triton kernels (torch's CUDA builds come with Triton)."""
    return _forward, _backward


try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds come without Triton: the PyTorch arithmetic above runs instead
    triton = None

if triton is not None:
    @triton.jit
    def _forward(gu_ptr, h_ptr, inter, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < inter
        g = tl.load(gu_ptr + row * 2 * inter + cols, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + row * 2 * inter + inter + cols, mask=mask, other=0.0).to(tl.float32)
        h = g * tl.sigmoid(g) * u
        tl.store(h_ptr + row * inter + cols, h.to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _backward(dh_ptr, gu_ptr, inter, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < inter
        d = tl.load(dh_ptr + row * inter + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(gu_ptr + row * 2 * inter + cols, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + row * 2 * inter + inter + cols, mask=mask, other=0.0).to(tl.float32)
        sig = tl.sigmoid(g)
        silu = g * sig
        tl.store(gu_ptr + row * 2 * inter + cols, (d * u * (sig + silu * (1.0 - sig))).to(gu_ptr.dtype.element_ty),
                 mask=mask)
        tl.store(gu_ptr + row * 2 * inter + inter + cols, (d * silu).to(gu_ptr.dtype.element_ty), mask=mask)
