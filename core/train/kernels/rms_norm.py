"""RMSNorm through torch's fused kernel (`torch.rms_norm`: one kernel forward, one backward, on CUDA from torch 2.8).

Why: Liger's Triton RMSNorm is one kernel each way too, but on an H200 the forward and backward of a 16k-token
norm took 560-586 µs of GPU against 161-190 for torch's, and 57 norms run each step (benchmarks/cpu_cost.py). Its
Python wrapper and Triton's launcher also cost more CPU a call than one dispatcher call.

Same result as transformers' Llama/Qwen2 RMSNorm up to bf16 rounding: those normalise in fp32, round, then multiply
by the weight; the fused kernel multiplies before it rounds. Only modules whose weight has the input's dtype take
it (a fp32-upcast norm of the old NF4 path keeps its own forward).
"""
from __future__ import annotations

import types

import torch


def available() -> bool:
    """torch.rms_norm is one fused kernel on CUDA from torch 2.8 (before, a chain of elementwise ops)."""
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 8)


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    weight = self.weight
    if x.dtype != weight.dtype:
        return self._unfused_forward(x)
    out = torch.rms_norm(x, (x.shape[-1],), weight, self.variance_epsilon)
    return out if out.dtype == x.dtype else out.to(x.dtype)  # (should autocast run it in fp32)


def use_torch_rms_norm(model) -> int:
    """Give every Llama/Qwen2-style RMSNorm of `model` (a `weight` and a `variance_epsilon`) torch's fused forward.
    Returns how many modules were changed."""
    n = 0
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon") \
                and isinstance(getattr(module, "weight", None), torch.nn.Parameter) \
                and not hasattr(module, "_unfused_forward"):
            module._unfused_forward = module.forward
            module.forward = types.MethodType(_forward, module)
            n += 1
    return n
