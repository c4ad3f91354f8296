"""`fused_blocks`: q/k/v of each attention and gate/up/SwiGLU/down of each MLP as one autograd node each. Same outputs
and the same gradient for every LoRA weight and for the input as PEFT's own graph, on real tiny Qwen2 (q/k/v with
bias) and Llama models; the base weights are stored once; an optimizer step is seen by the next forward."""
from __future__ import annotations

import pytest
import torch

from core.train.kernels.fast_lora import fuse_lora_forward
from core.train.kernels.fused_blocks import LoraMLP, LoraQKV, fuse_blocks, recompute_mlp_output
from core.train.kernels.swiglu import swiglu, swiglu_backward_


def _model(arch: str, seed: int = 0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=True)
    base = Qwen2ForCausalLM(Qwen2Config(**common)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    base.config._attn_implementation = "sdpa"
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero: make every adapter contribute to every gradient
    return model


def _grads(model, embeds):
    x = embeds.clone().requires_grad_(True)
    out = model(inputs_embeds=x).logits
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return out.detach(), x.grad, grads


def _nodes(model, embeds) -> set[str]:
    """The names of the autograd nodes one forward builds."""
    seen, names = set(), set()
    todo = [model(inputs_embeds=embeds.clone().requires_grad_(True)).logits.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        todo += [n for n, _ in node.next_functions]
    return names


def _close(got, want, rel):
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * scale)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("recompute", [False, True])
def test_fused_nodes_give_pefts_outputs_and_gradients(arch, recompute):
    model = _model(arch)
    embeds = torch.randn(3, 11, 64)
    out_ref, dx_ref, g_ref = _grads(model, embeds)
    fuse_lora_forward(model, grad=True)
    assert fuse_blocks(model) == (2, 2)
    assert recompute_mlp_output(model, recompute) == 2
    nodes = _nodes(model, embeds)
    assert {"LoraQKVBackward", "LoraMLPBackward"} <= nodes, nodes
    out, dx, g = _grads(model, embeds)
    _close(out, out_ref, 1e-5)
    _close(dx, dx_ref, 1e-5)
    assert g.keys() == g_ref.keys() and len(g) == 2 * 7 * 2
    for name in g:
        assert g[name].abs().sum() > 0, name
        _close(g[name], g_ref[name], 1e-5)


def test_under_bf16_autocast_with_fp32_lora_weights():
    """The GPU presets' case, on the CPU: bf16 base and autocast, fp32 LoRA weights; gradients come back fp32."""
    model = _model("qwen2", 1)
    model.base_model.model.to(torch.bfloat16)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    embeds = torch.randn(2, 9, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ref, dx_ref, g_ref = _grads(model, embeds)
        fuse_lora_forward(model, grad=True)
        fuse_blocks(model)
        assert {"LoraQKVBackward", "LoraMLPBackward"} <= _nodes(model, embeds)
        out, dx, g = _grads(model, embeds)
    _close(out.float(), out_ref.float(), 3e-2)
    _close(dx.float(), dx_ref.float(), 3e-2)
    for name in g:
        assert g[name].dtype == torch.float32, name
        _close(g[name], g_ref[name], 5e-2)


def test_base_weights_are_stored_once_and_unchanged():
    model = _model("qwen2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_blocks(model)
    attn = model.base_model.model.model.layers[0].self_attn
    q, k = attn.q_proj.base_layer, attn.k_proj.base_layer
    assert k.weight.data_ptr() == q.weight.data_ptr() + q.weight.numel() * q.weight.element_size()
    assert k.bias.data_ptr() == q.bias.data_ptr() + q.bias.numel() * q.bias.element_size()
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)


def test_an_optimizer_step_reaches_the_next_forward():
    """The cast LoRA weights are kept for one step: fused AdamW changes the weights without bumping their version,
    so a stale cache would train on old weights. Two steps, fused against PEFT's graph, same updates."""
    embeds = torch.randn(2, 7, 64)
    results = []
    for fused in (False, True):
        model = _model("llama", 3)
        if fused:
            fuse_lora_forward(model, grad=True)
            fuse_blocks(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, fused=True)
        for _ in range(3):
            model(inputs_embeds=embeds).logits.pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            results.append(model(inputs_embeds=embeds).logits)
    _close(results[1], results[0], 1e-4)


def test_without_gradients_each_projection_runs_its_own_path():
    model = _model("qwen2")
    embeds = torch.randn(1, 5, 64)
    with torch.no_grad():
        want = model(inputs_embeds=embeds).logits
    fuse_lora_forward(model, grad=True)
    fuse_blocks(model)
    calls = []
    for fn in (LoraQKV, LoraMLP):
        original = fn.forward
        fn.forward = staticmethod(lambda *a, _o=original: calls.append(1) or _o(*a))
    try:
        with torch.no_grad():
            got = model(inputs_embeds=embeds).logits
    finally:
        LoraQKV.forward, LoraMLP.forward = LoraQKV.__dict__["forward"], LoraMLP.__dict__["forward"]
    assert not calls
    _close(got, want, 1e-5)


def test_a_disabled_adapter_falls_back_to_the_base():
    model = _model("qwen2")
    embeds = torch.randn(1, 5, 64)
    with model.disable_adapter(), torch.no_grad():
        want = model(inputs_embeds=embeds).logits
    fuse_lora_forward(model, grad=True)
    fuse_blocks(model)
    with model.disable_adapter():
        got = model(inputs_embeds=embeds.requires_grad_(True)).logits
    _close(got.detach(), want, 1e-5)


def test_swiglu_backward_is_autograds():
    torch.manual_seed(0)
    gu = torch.randn(6, 2 * 40, dtype=torch.float64)
    dh = torch.randn(6, 40, dtype=torch.float64)
    ref = gu.clone().requires_grad_(True)
    g, u = ref.split(40, dim=1)
    (torch.nn.functional.silu(g) * u * dh).sum().backward()
    torch.testing.assert_close(swiglu(gu), (torch.nn.functional.silu(g) * u).detach())
    torch.testing.assert_close(swiglu_backward_(dh, gu.clone()), ref.grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (Triton kernels)")
def test_triton_swiglu_matches_the_pytorch_arithmetic():
    torch.manual_seed(0)
    gu = torch.randn(333, 2 * 8960, device="cuda", dtype=torch.bfloat16)
    dh = torch.randn(333, 8960, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(swiglu(gu), swiglu(gu.cpu()).cuda(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(swiglu_backward_(dh, gu.clone()), swiglu_backward_(dh.cpu(), gu.cpu()).cuda(),
                               rtol=1e-2, atol=2e-2)


def test_with_activation_checkpointing_as_memory_short_runs_have_it():
    """Checkpointed layers run the fused nodes twice (forward, then the recompute in backward): the q/k/v hand-over
    and the kept tensors must match between the two."""
    model = _model("qwen2", 4)
    model.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    embeds = torch.randn(2, 8, 64)
    out_ref, dx_ref, g_ref = _grads(model, embeds)
    fuse_lora_forward(model, grad=True)
    fuse_blocks(model)
    recompute_mlp_output(model, True)
    out, dx, g = _grads(model, embeds)
    _close(out, out_ref, 1e-5)
    _close(dx, dx_ref, 1e-5)
    for name in g:
        _close(g[name], g_ref[name], 1e-5)


@pytest.mark.slow
def test_a_training_run_learns_the_same_as_pefts_graph(tiny_qwen_dir, small_dataset, tmp_path, monkeypatch):
    """The real engine, 12 steps on the tiny Qwen2: same loss curve, eval loss and adapter on disk."""
    from tests.test_fast_path import assert_learned_the_same, run

    ref = run(tiny_qwen_dir, small_dataset, tmp_path / "ref", fast_lora=False)
    calls = []
    for node in (LoraQKV, LoraMLP):
        backward = node.backward
        monkeypatch.setattr(node, "backward", staticmethod(lambda ctx, *g, _b=backward: calls.append(1) or _b(ctx, *g)))
    got = run(tiny_qwen_dir, small_dataset, tmp_path / "fused", fused_lora_grad=True, fused_blocks=True)
    assert len(calls) == 12 * 2 * 2  # every step, both nodes of both layers
    assert_learned_the_same(ref, got)


def test_weights_loaded_into_the_adapter_reach_the_next_forward():
    """Resuming a checkpoint copies saved LoRA weights into the live ones (no optimizer step): the cast kept for
    the step must not hide them."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    other = _model("qwen2", 8)  # the same base; other LoRA weights
    with torch.no_grad():
        for name, p in other.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.3)
    saved = {k: v.clone() for k, v in get_peft_model_state_dict(other).items()}
    embeds = torch.randn(2, 6, 64)
    with torch.no_grad():
        want = other(inputs_embeds=embeds).logits
    model = _model("qwen2", 8)
    fuse_lora_forward(model, grad=True)
    fuse_blocks(model)
    model(inputs_embeds=embeds).logits.sum().backward()  # the casts are made for the current weights
    set_peft_model_state_dict(model, saved)
    got = model(inputs_embeds=embeds.clone().requires_grad_(True)).logits  # the fused path, with grad
    _close(got.detach(), want, 1e-5)
