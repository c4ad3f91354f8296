"""One autograd node for the LoRA projections that read the same input: q/k/v of an attention layer (`LoraQKV`), and
gate/up → SwiGLU → down of an MLP (`LoraMLP`). Unquantised (16-bit) bases only; setting `fused_blocks`.

Why: at 16k-32k tokens a step the GPU waits on the CPU (H200 profile, results/h200x2-issue15-2026-11-30/2-profile:
~5,200 kernel launches a step, ~11% idle, 16k-token steps CPU-bound). Per layer and direction, each projection cost
3-5 launches and autograd added the input gradients of q, k and v (and of gate and up) as full-size tensors.
Here the frozen base weights of a group are one tensor (each base layer's weight is a view of it, so nothing is
stored twice), so the base product, the LoRA products and the input gradient are one matrix product each:
- LoRA A of the group is stacked (Σr × in) and LoRA B is block-diagonal (Σout × Σr): x·Aᵀ is one product, and its
  update lands in the whole output with one `addmm_` (q/k/v) or inside the base product itself (gate/up, `folded`:
  their output is 12× wider than their input on Qwen2.5-1.5B); the backward reads the blocks it needs.
- The cast of the fp32 LoRA weights to the compute dtype is made once per optimizer step, not per call.
- The MLP keeps x and the gate/up output, not SwiGLU's output (down_proj's input, I values a token) when layers are
  recomputed anyway (memory-short runs, `recompute_mlp_output`): one elementwise pass rebuilds it in backward.

q_proj's forward runs the whole q/k/v node and hands k and v to the k_proj and v_proj calls that follow with the
same input (transformers' Llama/Qwen2/Mistral attention calls them in that order); any other call runs that
projection's own path (kernels/fast_lora.py). The fused paths run only with gradients on (training); evaluation
and generation take the per-projection path. Same weights and adapter on disk; tests/test_fused_blocks.py compares
outputs and every gradient with PEFT's own graph.
"""
from __future__ import annotations

import types

import torch

from core.train.kernels.fast_lora import plain_adapter
from core.train.kernels.swiglu import swiglu, swiglu_backward_

_STEPS = [0]  # optimizer steps taken in this process: the cast LoRA weights are kept for one step
_HOOK: list = []


def _count_optimizer_steps() -> None:
    """Fused AdamW updates parameters without bumping their version counter: an optimizer step hook says when the
    LoRA weights changed."""
    if not _HOOK:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _HOOK.append(register_optimizer_step_post_hook(lambda *a: _STEPS.__setitem__(0, _STEPS[0] + 1)))


class Group:
    """The LoRA layers of one fused node: their frozen base weights made one (Σout × in) tensor, their bias, and
    the stacked A / block-diagonal B in the compute dtype (refreshed once per optimizer step).

    `folded` (gate/up): the weight tensor is (Σout × (in + Σr)), the base weight in its first `in` columns and
    scaling·B block-diagonal in the last Σr. The LoRA update then rides in the base product, [x | x·Aᵀ]·[W | sB]ᵀ,
    instead of an `addmm_` that reads and writes the whole (tokens × 2I) output again, and the backward's
    g·[W | sB] gives the input gradient and g·sB in one pass over g. For outputs much wider than the input
    (gate/up: 17,920 against 1,536 on Qwen2.5-1.5B) the extra (tokens × (in + Σr)) input costs far less."""

    def __init__(self, layers: list, folded: bool = False):
        self.layers = layers
        bases = [layer.base_layer for layer in layers]
        self.sizes = [b.out_features for b in bases]
        self.in_features = bases[0].in_features
        self.folded = folded
        if folded:
            name = layers[0].active_adapters[0]
            self.ranks = [layer.lora_A[name].weight.shape[0] for layer in layers]
            self.weight = bases[0].weight.new_zeros(sum(self.sizes), self.in_features + sum(self.ranks))
            self.weight[:, :self.in_features] = torch.cat([b.weight.data for b in bases])
            for b, view in zip(bases, self.weight[:, :self.in_features].split(self.sizes)):
                b.weight.data = view  # the group's tensor is the only copy
        elif len(bases) == 1:
            self.weight = bases[0].weight.data
        else:
            self.weight = torch.cat([b.weight.data for b in bases])
            for b, view in zip(bases, self.weight.split(self.sizes)):
                b.weight.data = view  # the group's tensor is the only copy
        self.bias = None
        if bases[0].bias is not None:
            self.bias = torch.cat([b.bias.data for b in bases]) if len(bases) > 1 else bases[0].bias.data
            if len(bases) > 1:
                for b, view in zip(bases, self.bias.split(self.sizes)):
                    b.bias.data = view
        self.pending: list | None = None  # [input, k, v] from q_proj's call, for k_proj's and v_proj's
        self._cast: dict | None = None  # compute dtype -> (A stacked, B block-diagonal, their views, key)

    def usable(self, x: torch.Tensor) -> list | None:
        """The LoRA parameters (A1, B1, A2, B2, ...) when this call can take the fused node, else None."""
        if not torch.is_grad_enabled():
            return None
        params = []
        scaling = None
        for layer in self.layers:
            name = plain_adapter(layer)
            if name is None or not isinstance(layer.lora_dropout[name], torch.nn.Identity):
                return None
            if scaling is None:
                scaling = layer.scaling[name]
            elif layer.scaling[name] != scaling:
                return None
            params += [layer.lora_A[name].weight, layer.lora_B[name].weight]
        if self.folded and [a.shape[0] for a in params[0::2]] != self.ranks:
            return None  # another adapter's rank than the folded layout was made for
        if not self._intact() or self.compute_dtype(x) != self.weight.dtype:
            return None  # weights replaced (e.g. moved), or a base in another dtype than the compute: own paths
        self.scaling = scaling
        return params

    def _intact(self) -> bool:
        offset = 0
        row = self.weight.stride(0) * self.weight.element_size()
        for layer, size in zip(self.layers, self.sizes):
            if layer.base_layer.weight.data_ptr() != self.weight.data_ptr() + offset * row:
                return False
            offset += size
        return True

    @staticmethod
    def compute_dtype(x: torch.Tensor) -> torch.dtype:
        device = x.device.type
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype

    def lora(self, params: list, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(A stacked, B block-diagonal) in `dtype`: two buffers made once, refreshed by one copy per optimizer
        step (each LoRA weight has its fixed view in them). Folded, B is scaling·B inside the weight tensor."""
        key = (_STEPS[0], self.scaling, tuple((p._version, p.data_ptr()) for p in params))
        buffers = self._cast.get(dtype) if self._cast is not None else None
        if buffers is None:
            a_s, b_s = params[0::2], params[1::2]
            a = a_s[0].new_empty(sum(t.shape[0] for t in a_s), a_s[0].shape[1], dtype=dtype)
            b = self.weight[:, self.in_features:] if self.folded else \
                b_s[0].new_zeros(sum(self.sizes), a.shape[0], dtype=dtype)
            views, row, col = [], 0, 0
            for a_p, b_p in zip(a_s, b_s):
                r, out = a_p.shape[0], b_p.shape[0]
                views += [a[col:col + r], b[row:row + out, col:col + r]]
                row, col = row + out, col + r
            buffers = (a, b, views, None)
            self._cast = {**(self._cast or {}), dtype: buffers}
        a, b, views, seen = buffers
        if seen != key:
            with torch.no_grad():
                torch._foreach_copy_(views, params)
                if self.folded:
                    b.mul_(self.scaling)
            self._cast[dtype] = (a, b, views, key)
        return a, b

    def project(self, x2: torch.Tensor, params: list, dtype: torch.dtype):
        """base(x) + scaling·B(A(x)) for the whole group: (output, the tensors its backward needs)."""
        a, b = self.lora(params, dtype)
        xa = torch.mm(x2, a.t())
        if self.folded:
            x2 = torch.cat([x2, xa], dim=1)  # [x | x·Aᵀ], for [W | sB]
            xa = None
        weight = self.weight
        out = torch.addmm(self.bias, x2, weight.t()) if self.bias is not None else torch.mm(x2, weight.t())
        if xa is not None:
            out.addmm_(xa, b.t(), alpha=self.scaling)
        return out, (x2, xa, a, b)

    def gradients(self, g: torch.Tensor, saved: tuple, scaling: float, params: list, need_x: bool):
        """From the group output's gradient g (tokens × Σout): (input gradient or None, [dA1, dB1, dA2, ...])."""
        x2, xa, a, b = saved
        unused = g.new_empty(())  # beta=0: addmm reads nothing from it
        grad_x = None
        if self.folded:  # x2 is [x | x·Aᵀ]; g·[W | sB] = [input gradient's base part | g·sB]
            inner = self.in_features
            if need_x:
                full = torch.mm(g, self.weight)
                grad_x, dxa = full[:, :inner], full[:, inner:]
            else:
                dxa = torch.mm(g, b)
            x2, xa = x2[:, :inner], x2[:, inner:]
        else:
            dxa = torch.addmm(unused, g, b, beta=0, alpha=scaling)  # tokens × Σr
            if need_x:
                grad_x = torch.mm(g, self.weight)
        grad_b = torch.addmm(unused, g.t(), xa, beta=0, alpha=scaling).to(params[1].dtype)  # Σout × Σr
        grad_a = torch.mm(dxa.t(), x2).to(params[0].dtype)  # Σr × in
        if grad_x is not None:
            grad_x.addmm_(dxa, a)
        grads, row, col = [], 0, 0
        for a_p, b_p in zip(params[0::2], params[1::2]):
            r, out = a_p.shape[0], b_p.shape[0]
            grads += [grad_a[col:col + r], grad_b[row:row + out, col:col + r]]
            row, col = row + out, col + r
        return grad_x, grads


class LoraQKV(torch.autograd.Function):
    """q, k, v = the attention's three LoRA projections of x, as one node."""

    @staticmethod
    def forward(ctx, x, group: Group, *params):
        dtype = group.compute_dtype(x)
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        out, saved = group.project(x2, list(params), dtype)
        ctx.save_for_backward(*saved, *params)
        ctx.group, ctx.scaling, ctx.x_shape, ctx.x_dtype = group, group.scaling, x.shape, x.dtype
        lead = x.shape[:-1]
        *qk, v = (part.view(*lead, part.shape[-1]) for part in out.split(group.sizes, dim=1))
        # v gets its own storage: attention keeps v for its backward, and a view would keep the whole q/k/v output
        # alive with it (+3.1 GiB peak at 32k tokens, Qwen2.5-1.5B on an H200); q and k go through RoPE first.
        return (*qk, v.contiguous())

    @staticmethod
    def backward(ctx, *grads):
        tensors = ctx.saved_tensors  # (read once: checkpointing's recompute hands each tensor out once)
        saved, params = tensors[:4], tensors[4:]
        group = ctx.group
        rows = saved[0].shape[0]
        g = torch.cat([gr.reshape(rows, size) if gr is not None else saved[0].new_zeros(rows, size)
                       for gr, size in zip(grads, group.sizes)], dim=1).to(saved[2].dtype)
        grad_x, lora_grads = group.gradients(g, saved, ctx.scaling, params, ctx.needs_input_grad[0])
        if grad_x is not None:
            grad_x = grad_x.view(ctx.x_shape).to(ctx.x_dtype)
        return (grad_x, None, *lora_grads)


class LoraMLP(torch.autograd.Function):
    """down(silu(gate(x)) · up(x)) with LoRA on the three projections, as one node."""

    @staticmethod
    def forward(ctx, x, gate_up: Group, down: Group, keep_h: bool, *params):
        dtype = gate_up.compute_dtype(x)
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        gu, saved_gu = gate_up.project(x2, list(params[:4]), dtype)
        h = swiglu(gu)
        out, saved_down = down.project(h, list(params[4:]), dtype)
        if not keep_h:
            saved_down = (None, *saved_down[1:])  # rebuilt from gu in backward
        ctx.save_for_backward(gu, *saved_gu, *saved_down, *params)
        ctx.groups, ctx.scalings = (gate_up, down), (gate_up.scaling, down.scaling)
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        gu, *rest = ctx.saved_tensors
        saved_gu, saved_down, params = tuple(rest[:4]), list(rest[4:8]), rest[8:]
        gate_up, down = ctx.groups
        g = grad.reshape(-1, grad.shape[-1]).to(gu.dtype)
        if saved_down[0] is None:
            saved_down[0] = swiglu(gu)  # recomputed: one elementwise pass instead of (tokens × I) kept per layer
        dh, down_grads = down.gradients(g, tuple(saved_down), ctx.scalings[1], params[4:], True)
        saved_down = None  # h's memory goes back before gate/up's backward
        dgu = swiglu_backward_(dh, gu)  # over gu: it is not read again
        grad_x, gu_grads = gate_up.gradients(dgu, saved_gu, ctx.scalings[0], params[:4], ctx.needs_input_grad[0])
        if grad_x is not None:
            grad_x = grad_x.view(ctx.x_shape).to(ctx.x_dtype)
        return (grad_x, None, None, None, *gu_grads, *down_grads)


def _qkv_first(self, x, *args, **kwargs):
    group = self._fused_group
    params = None if args or kwargs else group.usable(x)
    if params is None:
        group.pending = None
        return self._unfused_forward(x, *args, **kwargs)
    q, k, v = LoraQKV.apply(x, group, *params)
    group.pending = [x, k, v]
    return q


def _qkv_take(index: int):
    def forward(self, x, *args, **kwargs):
        group = self._fused_group
        pending = group.pending
        if pending is not None and pending[0] is x and pending[index] is not None and not args and not kwargs:
            out, pending[index] = pending[index], None
            if index == 2:
                group.pending = None
            return out
        return self._unfused_forward(x, *args, **kwargs)
    return forward


def _mlp_forward(self, x, *args, **kwargs):
    gate_up, down = self._fused_groups
    params = None if args or kwargs else gate_up.usable(x)
    down_params = down.usable(x) if params is not None else None
    if down_params is None:
        return self._unfused_forward(x, *args, **kwargs)
    return LoraMLP.apply(x, gate_up, down, not self._recompute_output, *params, *down_params)


def _is_lora_linear(module) -> bool:
    """A PEFT LoRA layer over a plain torch Linear (unquantised): what the fused nodes can read as one weight."""
    base = getattr(module, "base_layer", None)
    return hasattr(module, "lora_A") and type(base) is torch.nn.Linear


def _silu_mlp(mlp) -> bool:
    act = getattr(getattr(mlp, "config", None), "hidden_act", None)
    if act is None:
        act = "silu" if isinstance(getattr(mlp, "act_fn", None), torch.nn.SiLU) else None
    return act in ("silu", "swish")


def fuse_blocks(model) -> tuple[int, int]:
    """Give every attention with LoRA on q/k/v, and every SwiGLU MLP with LoRA on gate/up/down, of `model` its one
    fused node (unquantised bases only). Returns (attentions, MLPs) changed."""
    _count_optimizer_steps()
    attentions = mlps = 0
    for module in list(model.modules()):
        names = ("q_proj", "k_proj", "v_proj")
        layers = [getattr(module, n, None) for n in names]
        if all(_is_lora_linear(m) for m in layers) and not hasattr(layers[0], "_fused_group") \
                and len({m.base_layer.in_features for m in layers}) == 1 \
                and len({m.base_layer.bias is None for m in layers}) == 1:
            group = Group(layers)
            for i, layer in enumerate(layers):
                layer._fused_group = group
                layer._unfused_forward = layer.forward
                fwd = _qkv_first if i == 0 else _qkv_take(i)
                layer.forward = types.MethodType(fwd, layer)
            attentions += 1
        names = ("gate_proj", "up_proj", "down_proj")
        layers = [getattr(module, n, None) for n in names]
        if all(_is_lora_linear(m) for m in layers) and _silu_mlp(module) and not hasattr(module, "_fused_groups") \
                and all(m.base_layer.bias is None for m in layers) \
                and layers[0].base_layer.out_features == layers[1].base_layer.out_features:
            module._fused_groups = (Group(layers[:2], folded=True), Group(layers[2:]))
            module._recompute_output = False
            module._unfused_forward = module.forward
            module.forward = types.MethodType(_mlp_forward, module)
            mlps += 1
    return attentions, mlps


def recompute_mlp_output(model, recompute: bool) -> int:
    """Whether the fused MLPs rebuild SwiGLU's output in backward instead of keeping it (the checkpoint plan's
    choice: memory-short runs recompute). Returns how many MLPs were set."""
    n = 0
    for module in model.modules():
        if hasattr(module, "_fused_groups"):
            module._recompute_output = recompute
            n += 1
    return n
