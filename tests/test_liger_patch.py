"""Liger's kernels go on the run's model only: its per-instance call also rebinds the modeling module's classes, and
every llama built later in the process (a CPU one in the same test run, on a GPU box) got Triton layers. Liger is not
installed on the CPU machines, so a stand-in does what its `_apply_liger_kernel_to_instance` does: patch the
instance and rebind the module's names."""
from __future__ import annotations

import sys
import types

import pytest
from transformers.models.llama import modeling_llama

from core.train.model_setup import _apply_liger


class FakeLigerMLP:
    pass


def fake_apply(model, **_):
    modeling_llama.LlamaMLP = FakeLigerMLP  # what Liger does to the module
    modeling_llama.LlamaRMSNorm = FakeLigerMLP
    model.patched_by_liger = True  # and to the instance


@pytest.fixture
def fake_liger(monkeypatch):
    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch._apply_liger_kernel_to_instance = fake_apply
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, patch.__name__, patch)


def test_the_run_model_gets_liger_and_the_module_keeps_its_classes(fake_liger, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    mlp, norm = modeling_llama.LlamaMLP, modeling_llama.LlamaRMSNorm
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    lines = []
    _apply_liger(model, lines.append)
    assert model.patched_by_liger
    assert modeling_llama.LlamaMLP is mlp and modeling_llama.LlamaRMSNorm is norm
    assert [line.message for line in lines] == ["Liger kernels: fused RMSNorm and SwiGLU"]
    later = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))  # built after: plain torch layers
    assert type(later.model.layers[0].mlp) is mlp
