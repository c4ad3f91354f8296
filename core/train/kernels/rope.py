"""RoPE on q and k in one Triton kernel each way (setting `fused_rope`), instead of transformers' ~10 elementwise
kernels a layer forward (q·cos, rotate_half's negation and concatenation, ·sin, the sum; for q and for k) and ~20
backward (the products' gradients, the concatenation's and slices' gradients and their sums).

Why: at 16k tokens a GPU (a `--gpus 2` split of modern-bf16's 32k-token batch) a step is bound by the CPU's kernel
launches, not by the GPU: RoPE was ~800 of a step's ~3,700 launches on Qwen2.5-1.5B (28 layers). Session 7 measured
no gain from a RoPE kernel at 32k tokens on one GPU, where the GPU is the bound.

The same arithmetic as transformers' `apply_rotary_pos_emb` (q·cos + rotate_half(q)·sin, rotate_half(x) =
[−x₂, x₁]), done in fp32 and rounded once, for the usual layout: q, k as (batch, heads, tokens, head_dim) views and
cos, sin as (batch or 1, tokens, head_dim). Anything else (another layout, the CPU, dtypes that differ) runs
transformers' own function. Batch size and length are runtime arguments: one compilation per model, not per shape
(Liger's RoPE recompiled for each new number of rows, see model_setup._apply_liger).
"""
from __future__ import annotations

import sys

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None

if triton is not None:
    @triton.jit
    def _rotate(x_ptr, o_ptr, x_sb, x_sh, x_ss, o_sb, o_sh, o_ss, b, s, c1, c2, s1, s2,
                H: tl.constexpr, BLOCK_H: tl.constexpr, HALF: tl.constexpr, BLOCK_D: tl.constexpr,
                BACKWARD: tl.constexpr):
        h = tl.arange(0, BLOCK_H)[:, None]
        d = tl.arange(0, BLOCK_D)[None, :]
        mask = (h < H) & (d < HALF)
        x_at = x_ptr + b * x_sb + s * x_ss + h * x_sh + d
        o_at = o_ptr + b * o_sb + s * o_ss + h * o_sh + d
        x1 = tl.load(x_at, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(x_at + HALF, mask=mask, other=0.0).to(tl.float32)
        if BACKWARD:  # the transpose of the rotation: dx₁ = g₁·c₁ + g₂·s₂, dx₂ = g₂·c₂ − g₁·s₁
            y1 = x1 * c1 + x2 * s2
            y2 = x2 * c2 - x1 * s1
        else:  # y₁ = x₁·c₁ − x₂·s₁, y₂ = x₂·c₂ + x₁·s₂
            y1 = x1 * c1 - x2 * s1
            y2 = x2 * c2 + x1 * s2
        tl.store(o_at, y1.to(o_ptr.dtype.element_ty), mask=mask)
        tl.store(o_at + HALF, y2.to(o_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _rope_kernel(q_ptr, k_ptr, qo_ptr, ko_ptr, cos_ptr, sin_ptr, seq_len,
                     q_sb, q_sh, q_ss, k_sb, k_sh, k_ss, qo_sb, qo_sh, qo_ss, ko_sb, ko_sh, ko_ss, c_sb, c_ss,
                     HQ: tl.constexpr, HK: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
                     HALF: tl.constexpr, BLOCK_D: tl.constexpr, BACKWARD: tl.constexpr):
        row = tl.program_id(0)  # one token: all its q and k heads
        b = row // seq_len
        s = row % seq_len
        d = tl.arange(0, BLOCK_D)[None, :]
        dm = d < HALF
        c_at = b * c_sb + s * c_ss + d
        c1 = tl.load(cos_ptr + c_at, mask=dm, other=0.0).to(tl.float32)
        c2 = tl.load(cos_ptr + c_at + HALF, mask=dm, other=0.0).to(tl.float32)
        s1 = tl.load(sin_ptr + c_at, mask=dm, other=0.0).to(tl.float32)
        s2 = tl.load(sin_ptr + c_at + HALF, mask=dm, other=0.0).to(tl.float32)
        _rotate(q_ptr, qo_ptr, q_sb, q_sh, q_ss, qo_sb, qo_sh, qo_ss, b, s, c1, c2, s1, s2,
                HQ, BLOCK_HQ, HALF, BLOCK_D, BACKWARD)
        _rotate(k_ptr, ko_ptr, k_sb, k_sh, k_ss, ko_sb, ko_sh, ko_ss, b, s, c1, c2, s1, s2,
                HK, BLOCK_HK, HALF, BLOCK_D, BACKWARD)


def _like_projection(x: torch.Tensor) -> torch.Tensor:
    """A new (batch, heads, tokens, dim) tensor laid out (batch, tokens, heads, dim), as transformers' own RoPE
    output is (it follows the projection's layout): attention then reads what it read before."""
    b, h, s, d = x.shape
    return x.new_empty(b, s, h, d).transpose(1, 2)


def _launch(q, k, cos, sin, backward: bool):
    qo, ko = _like_projection(q), _like_projection(k)
    batch, hq, seq, dim = q.shape
    hk = k.shape[1]
    c_sb = cos.stride(0) if cos.shape[0] > 1 else 0
    _rope_kernel[(batch * seq,)](
        q, k, qo, ko, cos, sin, seq,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        qo.stride(0), qo.stride(1), qo.stride(2), ko.stride(0), ko.stride(1), ko.stride(2), c_sb, cos.stride(1),
        HQ=hq, HK=hk, BLOCK_HQ=triton.next_power_of_2(hq), BLOCK_HK=triton.next_power_of_2(hk),
        HALF=dim // 2, BLOCK_D=triton.next_power_of_2(dim // 2), BACKWARD=backward, num_warps=4)
    return qo, ko


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _launch(q, k, cos, sin, backward=False)

    @staticmethod
    def backward(ctx, gq, gk):
        cos, sin = ctx.saved_tensors  # (gq, gk: zeros rather than None for an unused output, autograd's default)
        # the kernel reads the head dimension with unit stride; attention's backward gives that, anything else is
        # made so here
        gq, gk = (g if g.stride(3) == 1 else g.contiguous() for g in (gq, gk))
        dq, dk = _launch(gq, gk, cos, sin, backward=True)
        return dq, dk, None, None


def fits(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int) -> bool:
    """The kernel's case: CUDA tensors of one dtype, q and k (batch, heads, tokens, dim) with the dim contiguous,
    cos and sin (batch or 1, tokens, dim) needing no gradient."""
    if triton is None or unsqueeze_dim != 1 or not q.is_cuda or q.dim() != 4 or k.dim() != 4 or cos.dim() != 3:
        return False
    batch, _, seq, dim = q.shape
    return (k.shape[0] == batch and k.shape[2] == seq and k.shape[3] == dim and dim % 2 == 0
            and cos.shape == sin.shape and cos.shape[1:] == (seq, dim) and cos.shape[0] in (1, batch)
            and cos.stride() == sin.stride() and q.dtype == k.dtype == cos.dtype == sin.dtype
            and q.stride(3) == 1 and k.stride(3) == 1 and cos.stride(2) == 1
            and not cos.requires_grad and not sin.requires_grad)


def fused_rope(original):
    """`original` (a model module's apply_rotary_pos_emb) with the kernel taking the calls that fit it."""
    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        if args or set(kwargs) - {"unsqueeze_dim"} or not fits(q, k, cos, sin, kwargs.get("unsqueeze_dim", 1)):
            return original(q, k, cos, sin, *args, **kwargs)
        return _Rope.apply(q, k, cos, sin)

    apply_rotary_pos_emb.fused_rope = True
    return apply_rotary_pos_emb


def reference(q, k, cos, sin):
    """What the kernel computes, in PyTorch: x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁]."""
    def rotate(x):
        half = x.shape[-1] // 2
        return x * cos.unsqueeze(1) + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin.unsqueeze(1)
    return rotate(q), rotate(k)


def computes_half_split_rope(function) -> bool:
    """Whether a model module's apply_rotary_pos_emb is the half-split RoPE the kernel computes, asked once on a
    small CPU input: some models pair neighbouring dimensions instead (interleaved, e.g. Cohere), or rotate part of
    the head; those keep their own."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 1, 5, 8, generator=g)
    cos, sin = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    try:
        got = function(q, k, cos, sin)
    except Exception:  # noqa: BLE001 - another signature or layout: not ours to replace
        return False
    want = reference(q, k, cos, sin)
    return (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)
            and all(a.shape == b.shape and torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want)))


def use_fused_rope(model) -> bool:
    """Give the modules that define `model`'s attention layers the fused RoPE (their module-level
    apply_rotary_pos_emb, which transformers' attention forwards call), where that function computes the
    half-split RoPE the kernel does. False when none does or Triton is missing (the layers keep their RoPE)."""
    if triton is None:
        return False
    done = False
    for module in {type(m).__module__ for m in model.modules() if type(m).__name__.endswith("Attention")}:
        namespace = sys.modules.get(module)
        original = getattr(namespace, "apply_rotary_pos_emb", None)
        if original is None:
            continue
        if not getattr(original, "fused_rope", False):
            if not computes_half_split_rope(original):
                continue
            namespace.apply_rotary_pos_emb = fused_rope(original)
        done = True
    return done
