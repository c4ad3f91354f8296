"""A leaner LoRA forward: the adapter's update lands in the base output through one `addmm`.

PEFT computes `result.clone() + lora_B(lora_A(x)) * scaling` for every adapted projection: a defensive copy of
the base output (4-bit layers), a multiply and an add, each a full pass over a (tokens × out_features) tensor,
in the forward, again in the activation-checkpointing recompute, and in the backward. On an H100 these passes took
more GPU time than the matrix products of LoRA itself (benchmarks/README.md, profile). Here the update is
`addmm(result, x·Aᵀ, Bᵀ, alpha=scaling)`: the matrix unit adds it while it writes the output, and nothing else
touches that tensor. Same weights, same adapter on disk, same values up to float rounding
(tests/test_fast_lora.py compares loss curves with PEFT's forward).

Only the plain case is taken over (one active adapter, no DoRA/variants, not merged, no mixed-adapter batch);
anything else falls through to PEFT's own forward.

With `grad=True` (setting `fused_lora_grad`) the projection is also one node in the backward (`LoraProjection`):
autograd would compute the LoRA branch's input gradient as a full-size tensor of its own (tokens × in_features, the
MLP's width for down_proj) and add it to the base layer's; here it is written into the base's gradient by `addmm_`.
That is how Unsloth's LoRA kernels do it. Its forward adds the update into the base output in place: the
out-of-place addmm first copies that whole output into a new tensor (197 device copies a step in an H200 profile,
benchmarks/results/h200x2-issue15-2026-11-30/2-profile/). Together: 54.1k -> 57.1k tokens/s on modern-bf16 (H200,
one call, 3-ablations/), on in every mixed-precision GPU preset.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def plain_adapter(layer) -> str | None:
    """The one active adapter of a PEFT LoRA layer when its forward is the plain sum base(x) + scaling·B(A(x)) that
    the fused paths compute (not merged, no DoRA or other variant); None otherwise."""
    if (layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1
            or getattr(layer, "lora_variant", {}) or getattr(layer, "use_dora", {}).get(layer.active_adapters[0])):
        return None
    name = layer.active_adapters[0]
    return name if name in layer.lora_A else None


def _fast_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    original = self._peft_forward
    name = None if args or kwargs else plain_adapter(self)
    if name is None:
        return original(x, *args, **kwargs)
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    autocast = torch.is_autocast_enabled(x.device.type)
    if not autocast and x.dtype != lora_a.dtype:
        return original(x, *args, **kwargs)  # mixed dtypes without autocast: PEFT's casts are needed
    if self._fused_grad and isinstance(self.lora_dropout[name], torch.nn.Identity) and _dequantizable(self.base_layer):
        return LoraProjection.apply(x, lora_a, lora_b, self.scaling[name], self.base_layer)  # runs the base itself
    result = self.base_layer(x)
    if not autocast and result.dtype != x.dtype:  # a base layer that computes in another dtype (rare)
        return original(x, *args, **kwargs)
    xa = F.linear(self.lora_dropout[name](x), lora_a)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), xa.reshape(-1, xa.shape[-1]), lora_b.t(),
                      alpha=self.scaling[name])
    return out.view(result.shape)


def _dequantizable(base) -> bool:
    """A base layer whose weight the backward can read: a plain Linear, or bitsandbytes 4-bit (dequantised)."""
    return type(base).__name__ in ("Linear", "Linear4bit") and base.weight.dim() in (1, 2)


def _base_weight(base, dtype: torch.dtype) -> torch.Tensor:
    """The base layer's (out × in) weight in `dtype`, dequantised as bitsandbytes' own backward does."""
    weight = base.weight
    state = getattr(weight, "quant_state", None)
    if state is not None:
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, state).to(dtype)
    return weight.to(dtype)


class LoraProjection(torch.autograd.Function):
    """base(x) + scaling·(x·Aᵀ)·Bᵀ as one autograd node (no dropout). Forward is the addmm forward above; backward
    computes the base's input gradient (grad · W, W dequantised as bitsandbytes does) and accumulates the LoRA
    term into it in place, then A's and B's gradients from the saved x and x·Aᵀ.

    Few kernels, since a step launches this 196 times each way (Qwen2.5-1.5B) and a 16k-token step is CPU-bound:
    A and B are cast to the compute dtype once, in forward, and kept for backward; `scaling` rides in the products
    (`alpha`) instead of separate multiplies; the gradients of the fp32 LoRA weights are cast back by autograd."""

    @staticmethod
    def forward(ctx, x, lora_a, lora_b, scaling, base):
        result = base(x)
        # In place: the base output is this node's own (no autograd here), and an out-of-place addmm first copies
        # it whole into a new tensor (one full-size device copy per projection: 197 a step in an H200 profile).
        out = result.view(-1, result.shape[-1])
        dtype = out.dtype  # the compute dtype: autocast's, or the layers' own without autocast
        a, b = lora_a.to(dtype), lora_b.to(dtype)  # no copy when they have it already
        x2 = x.reshape(-1, x.shape[-1])
        xa = torch.mm(x2.to(dtype), a.t())
        out.addmm_(xa, b.t(), alpha=scaling)
        ctx.save_for_backward(x, xa, a, b)
        ctx.scaling, ctx.base = scaling, base
        return result

    @staticmethod
    def backward(ctx, grad):
        x, xa, a, b = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        if g.dtype != a.dtype:  # a gradient in another dtype than the forward computed in (unusual)
            a, b, xa = a.to(g.dtype), b.to(g.dtype), xa.to(g.dtype)
        unused = g.new_empty(())  # beta=0: addmm reads nothing from it
        dxa = torch.addmm(unused, g, b, beta=0, alpha=ctx.scaling)  # tokens × r, scaled
        grad_b = torch.addmm(unused, g.t(), xa, beta=0, alpha=ctx.scaling) if ctx.needs_input_grad[2] else None
        x2 = x.reshape(-1, x.shape[-1])
        grad_a = torch.mm(dxa.t(), x2.to(g.dtype)) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(g, _base_weight(ctx.base, g.dtype)).addmm_(dxa, a)
            grad_x = grad_x.view(*x.shape[:-1], grad_x.shape[-1]).to(x.dtype)
        return grad_x, grad_a, grad_b, None, None  # autograd casts A's and B's gradients to their (fp32) dtype


def fuse_lora_forward(model, grad: bool = False) -> int:
    """Give every LoRA Linear/Linear4bit of `model` the addmm forward (and with `grad`, the one-node backward);
    returns how many layers changed."""
    from peft.tuners.lora import LoraLayer

    n = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and isinstance(module, torch.nn.Module) and hasattr(module, "lora_A") \
                and type(module).__name__ in ("Linear", "Linear4bit", "Linear8bitLt"):
            module._fused_grad = grad
            if not hasattr(module, "_peft_forward"):
                module._peft_forward = module.forward
                module.forward = types.MethodType(_fast_forward, module)
                n += 1
    return n
