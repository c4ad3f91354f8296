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
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _fast_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    original = self._peft_forward
    if (args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1
            or getattr(self, "lora_variant", {}) or getattr(self, "use_dora", {}).get(self.active_adapters[0])):
        return original(x, *args, **kwargs)
    name = self.active_adapters[0]
    if name not in self.lora_A:
        return original(x, *args, **kwargs)
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    autocast = torch.is_autocast_enabled(x.device.type)
    if not autocast and x.dtype != lora_a.dtype:
        return original(x, *args, **kwargs)  # mixed dtypes without autocast: PEFT's casts are needed
    result = self.base_layer(x)
    if not autocast and result.dtype != x.dtype:  # a base layer that computes in another dtype (rare)
        return original(x, *args, **kwargs)
    xa = F.linear(self.lora_dropout[name](x), lora_a)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), xa.reshape(-1, xa.shape[-1]), lora_b.t(),
                      alpha=self.scaling[name])
    return out.view(result.shape)


def fuse_lora_forward(model) -> int:
    """Give every LoRA Linear/Linear4bit of `model` the addmm forward; returns how many layers changed."""
    from peft.tuners.lora import LoraLayer

    n = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and isinstance(module, torch.nn.Module) and hasattr(module, "lora_A") \
                and type(module).__name__ in ("Linear", "Linear4bit", "Linear8bitLt"):
            if not hasattr(module, "_peft_forward"):
                module._peft_forward = module.forward
                module.forward = types.MethodType(_fast_forward, module)
                n += 1
    return n
