"""The walks over every module that the Trainer made at each step, done once per run instead.

At each micro-batch transformers' Trainer calls `model.train()` (a recursive walk that sets a flag every module has
already) and `floating_point_ops`, which counts the model's parameters again (`num_parameters(exclude_embeddings=True)`
walks every module and parameter); at each step it hands `model.parameters()` to the gradient clipping and calls
`model.zero_grad()`, two more walks; our own step listed the trainable parameters again. A Qwen2.5-1.5B with LoRA on
its 7 projections has ~2,300 modules and ~730 parameters: on this project's 2-core CPU those walks took ~25 ms a step
(benchmarks/results/h200-issue15-session10/README.md). That CPU time is on the critical path of a step bound by the
CPU, as a `--gpus 2` split step at 16k tokens a GPU is; it is hidden where the GPU is the bound.

Everything here assumes what holds during a run: the model's modules and parameters are the ones it started with, and
only trainable parameters get gradients.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


def _plain_train_methods() -> set:
    """The train() methods that only set `training` on the module and its children (transformers' also re-applies
    hub kernels, but only when the mode changes): skipping a call that would not change a mode skips nothing else."""
    from torch.nn.parallel import DistributedDataParallel

    methods = {torch.nn.Module.train, DistributedDataParallel.train}
    try:
        from transformers import PreTrainedModel

        methods.add(PreTrainedModel.train)
    except ImportError:
        pass
    return methods


class ModuleWalks:
    """One model's modules and trainable parameters, listed once, and the parameter count the Trainer asks for."""

    def __init__(self) -> None:
        self._of: object | None = None
        self._modules: list = []
        self._plain = False
        self._trainable: list = []
        self._params: list = []
        self._counted: dict[int, int] = {}
        self._zeroing: object | None = None  # the model whose zero_grad is ours

    def _list(self, model) -> None:
        if self._of is not model:  # (the Trainer hands the same wrapped model to every step)
            self._of = model
            self._modules = list(model.modules())
            plain = _plain_train_methods()
            self._plain = all(type(m).train in plain for m in self._modules)
            self._params = list(model.parameters())
            self._trainable = [p for p in self._params if p.requires_grad]

    def trainable(self, model) -> list:
        """The parameters that train (requires_grad), in model order."""
        self._list(model)
        return self._trainable

    def gradients_of_listed(self) -> list | None:
        """The parameters that can hold a gradient (the trainable ones) of the model listed last, or None: what the
        gradient clipping needs instead of a walk over every parameter of that model."""
        return self._trainable if self._of is not None else None

    def zero_grad_listed(self, model) -> None:
        """From now on `model.zero_grad()` clears the listed parameters' gradients (the same parameters its walk
        would visit) until `restore()`."""
        self._list(model)
        if self._zeroing is model:
            return
        self.restore()
        full, params = model.zero_grad, self._params

        def zero_grad(set_to_none: bool = True) -> None:
            if not set_to_none:
                return full(set_to_none)
            for p in params:
                if p.grad is not None:
                    p.grad = None

        model.zero_grad = zero_grad  # (an instance attribute, as train() in train_walk_skipped)
        self._zeroing = model

    def restore(self) -> None:
        """The model's own zero_grad() again (the end of a run)."""
        if self._zeroing is not None:
            del self._zeroing.zero_grad
            self._zeroing = None

    def parameter_count(self, model) -> int:
        """model.num_parameters(exclude_embeddings=True), counted once (the weights do not change in a run)."""
        key = id(model)
        if key not in self._counted:
            self._counted[key] = model.num_parameters(exclude_embeddings=True)
        return self._counted[key]

    @contextmanager
    def train_walk_skipped(self, model):
        """Inside, `model.train()` returns at once when every module is in training mode already and each module's
        train() is a plain one; anything else (a module left in eval mode, a train() that does more) walks as
        before."""
        self._list(model)
        if not (self._plain and all(m.training for m in self._modules)):
            yield
            return
        full = model.train

        def train(mode: bool = True):
            return model if mode else full(mode)

        model.train = train  # (an instance attribute: shadows the class's method until deleted)
        try:
            yield
        finally:
            del model.train
