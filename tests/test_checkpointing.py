"""Activation checkpointing chosen from the memory there is (core.estimate.checkpoint_plan, applied by
core.train.model_setup): the setting's values, the plan for given memory, and that a layer turned off really skips
its recompute."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core import events as ev
from core.errors import InputError
from core.estimate import ARCHS, HEADROOM, checkpoint_plan, estimate_vram
from core.presets import config_for, config_from_dict

QWEN = ARCHS["qwen2.5-1.5b"]


def test_run_json_booleans_load_as_all_or_none_and_a_bad_value_is_named():
    on = config_for("modern-bf16").to_dict()
    assert on["gradient_checkpointing"] == "auto"
    assert config_from_dict({**on, "gradient_checkpointing": True}).gradient_checkpointing == "all"
    assert config_from_dict({**on, "gradient_checkpointing": False}).gradient_checkpointing == "none"
    assert config_for("8gb").gradient_checkpointing == "all"
    assert config_for("cpu").gradient_checkpointing == "none"
    with pytest.raises(InputError) as err:
        config_for("modern-bf16", gradient_checkpointing="some").validate()
    assert [p.message for p in err.value.problems] == ["gradient checkpointing must be all, none or auto, not 'some'"]


def test_the_estimate_matches_the_h200_peaks_with_and_without_checkpointing():
    # modern-bf16 as the lead measured it: 32k-token micro-batches of 128-1024-token rows
    cfg = replace(config_for("modern-bf16"), max_length=1024)
    assert estimate_vram(cfg, QWEN, checkpointed=0).total_gib == pytest.approx(66, rel=0.1)
    assert estimate_vram(cfg, QWEN, checkpointed=28).total_gib == pytest.approx(7.2, rel=0.15)
    assert estimate_vram(cfg, QWEN).total_gib == estimate_vram(cfg, QWEN, checkpointed=28).total_gib  # auto: least


@pytest.mark.parametrize("usable,layers", [(139.0, (0, 0)), (60.0, (1, 27)), (22.0, (1, 27)), (8.0, (28, 28))])
def test_auto_checkpoints_as_few_layers_as_the_memory_allows(usable, layers):
    cfg = replace(config_for("modern-bf16"), max_length=1024, quantization="nf4")  # as a run plans: resolved
    plan = checkpoint_plan(cfg, usable, QWEN)
    assert layers[0] <= plan.layers <= layers[1]
    assert plan.peak_gib <= usable * (1 - HEADROOM) or plan.layers == 28
    if 0 < plan.layers:  # one layer fewer would not have fitted
        assert estimate_vram(cfg, QWEN, checkpointed=plan.layers - 1).total_gib > usable * (1 - HEADROOM)
    line = plan.describe()
    which = "none of 28" if plan.layers == 0 else "all 28" if plan.layers == 28 else f"{plan.layers} of 28"
    assert line.startswith(f"activation checkpointing: {which} layers (≈66.1 GiB without")
    assert f"{usable:.1f} GiB usable, 12% kept free" in line


def test_forced_settings_and_the_8gb_preset_ignore_free_memory():
    assert checkpoint_plan(config_for("modern-bf16", gradient_checkpointing="all"), 139.0, QWEN).layers == 28
    plan = checkpoint_plan(config_for("modern-bf16", gradient_checkpointing=False), 4.0, QWEN)
    assert plan.layers == 0 and plan.describe() == ("activation checkpointing: none of 28 layers "
                                                   "(gradient_checkpointing=none)")
    eight = config_for("8gb")  # 2048-token rows, 16k-token micro-batches: all layers, within an 8 GB card
    assert checkpoint_plan(eight, 139.0, QWEN).layers == 28
    assert estimate_vram(eight, QWEN).total_gib <= 7.0
    unknown = checkpoint_plan(config_for("modern-bf16"), None, QWEN)
    assert unknown.layers == 28 and "all recomputed" in unknown.describe()


@pytest.fixture(scope="module")
def four_layer_dir(tmp_path_factory, tiny_tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("qwen4")
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                 tie_word_embeddings=True)).save_pretrained(str(folder))
    return folder


def _one_step(folder, setting, layers=None, **kw):
    """One forward and backward of the real load path; each decoder layer's MLP calls and the LoRA gradients."""
    import torch

    from core.train.checkpointing import apply_checkpoint_plan, decoder_layers
    from core.train.model_setup import load_model_from_path

    cfg = config_for("cpu", model=str(folder), gradient_checkpointing=setting, lora_dropout=0.0, **kw)
    model = load_model_from_path(cfg, folder, lambda e: None)
    if layers is not None:
        apply_checkpoint_plan(model, layers)
    calls = [0] * len(decoder_layers(model))
    for i, block in enumerate(decoder_layers(model)):  # inside the layer: the recompute calls it again (a forward
        #                                                  hook would not tell: the recompute runs without hooks)
        def counted(*a, _forward=block.mlp.forward, _i=i, **k):
            calls[_i] += 1
            return _forward(*a, **k)

        block.mlp.forward = counted
    model.train()
    ids = torch.randint(3, 100, (2, 24), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return calls, grads


def test_a_layer_turned_off_runs_its_forward_once_and_the_gradients_do_not_change(four_layer_dir):
    import torch

    calls_all, grads_all = _one_step(four_layer_dir, "all")
    calls_two, grads_two = _one_step(four_layer_dir, "auto", layers=2)
    calls_none, grads_none = _one_step(four_layer_dir, "none")
    calls_zero, _ = _one_step(four_layer_dir, "auto", layers=0)
    assert calls_all == [2, 2, 2, 2]  # recomputed in backward
    assert calls_two == [2, 2, 1, 1]  # the lowest two recompute, the top two keep their activations
    assert calls_none == calls_zero == [1, 1, 1, 1]
    for a, b, c in zip(grads_all, grads_two, grads_none):
        assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)


def test_the_frozen_embeddings_get_no_gradient_and_the_lowest_layer_learns_the_same(four_layer_dir):
    """Non-reentrant checkpointing needs no gradient at the embeddings' output: the hooks transformers and PEFT add
    for it are taken off (backward stops at the first layer's LoRA weights), and every LoRA gradient, the lowest
    layer's included, is what it was with them."""
    import torch

    from core.train.model_setup import load_model_from_path

    grads, asked = [], []
    for hooks in (True, False):
        cfg = config_for("cpu", model=str(four_layer_dir), gradient_checkpointing="all", lora_dropout=0.0)
        model = load_model_from_path(cfg, four_layer_dir, lambda e: None)
        torch.manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p)  # B starts at zero: A's gradient would be zero, agreement would be empty
        if hooks:
            model.get_base_model().enable_input_require_grads()  # as transformers and PEFT leave it
        model.get_input_embeddings().register_forward_hook(lambda m, i, out: asked.append(out.requires_grad))
        model.train()
        ids = torch.randint(3, 100, (2, 24), generator=torch.Generator().manual_seed(1))
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert asked == [True, False]
    assert grads[0].keys() == grads[1].keys() and any("layers.0." in n for n in grads[1])
    for name, g in grads[1].items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(g, grads[0][name])


def test_fused_mlps_rebuild_their_output_only_when_some_layer_recomputes(four_layer_dir):
    """The fused MLP keeps SwiGLU's output unless memory is short (some layer recomputed): then it rebuilds it in
    backward, and the estimate counts a kept layer that much smaller. Same gradients either way."""
    import torch

    from core.train.checkpointing import apply_checkpoint_plan
    from core.train.model_setup import load_model_from_path

    fused = dict(fused_lora_grad=True, fused_blocks=True)
    model = load_model_from_path(config_for("cpu", model=str(four_layer_dir), gradient_checkpointing="auto", **fused),
                                 four_layer_dir, lambda e: None)
    mlps = [m for m in model.modules() if hasattr(m, "_fused_groups")]
    assert len(mlps) == 4
    apply_checkpoint_plan(model, 2)
    assert all(m._recompute_output for m in mlps)
    apply_checkpoint_plan(model, 0)
    assert not any(m._recompute_output for m in mlps)

    calls_ref, grads_ref = _one_step(four_layer_dir, "auto", layers=2)
    calls, grads = _one_step(four_layer_dir, "auto", layers=2, **fused)
    assert calls == calls_ref == [2, 2, 1, 1]
    for a, b in zip(grads_ref, grads):
        assert torch.allclose(a, b, atol=1e-6)

    cfg = replace(config_for("modern-bf16"), max_length=1024, quantization="none")
    unfused = replace(cfg, fused_blocks=False)
    kept = 32768 * QWEN.intermediate * 2 / 1024 ** 3  # SwiGLU's output at 32k tokens, bf16, per kept layer
    assert estimate_vram(cfg, QWEN, checkpointed=0).total_gib == estimate_vram(unfused, QWEN, checkpointed=0).total_gib
    assert estimate_vram(unfused, QWEN, checkpointed=20).total_gib - estimate_vram(cfg, QWEN, checkpointed=20).total_gib \
        == pytest.approx(8 * kept, rel=0.02)
    assert checkpoint_plan(cfg, 22.0, QWEN).layers < checkpoint_plan(unfused, 22.0, QWEN).layers


def test_a_run_on_auto_says_what_it_chose_and_records_it(tiny_qwen_dir, small_dataset, tmp_path, monkeypatch):
    from transformers import AutoConfig

    from core.train import memory
    from core.estimate import arch_of
    from core.train.engine import train

    cfg = config_for("cpu", model=str(tiny_qwen_dir), gradient_checkpointing="auto", max_steps=2, score_rows=0,
                     cpu_bf16=False)  # the estimate below is the fp32 run's
    arch = arch_of(AutoConfig.from_pretrained(str(tiny_qwen_dir)))
    one = estimate_vram(cfg, arch, checkpointed=1).total_gib  # room for 1 of the 2 layers kept, not both
    monkeypatch.setattr(memory, "usable_gib", lambda config: one / (1 - HEADROOM) + 1e-6)
    events = []
    out = train(cfg, str(small_dataset), str(tmp_path / "out"), on_event=events.append)
    said = [e.message for e in events if isinstance(e, ev.LogLine) and e.message.startswith("activation")]
    assert len(said) == 1 and said[0].startswith("activation checkpointing: 1 of 2 layers (≈")
    record = json.loads((out / "run.json").read_text())
    assert record["activation_checkpointing"]["layers"] == 1 and record["config"]["gradient_checkpointing"] == "auto"


@pytest.mark.parametrize("flags,want", [([], "auto"), (["--gradient-checkpointing"], "all"),
                                        (["--gradient-checkpointing", "auto"], "auto"),
                                        (["--gradient-checkpointing", "none"], "none"),
                                        (["--no-gradient-checkpointing"], "none")])
def test_the_train_flags_force_or_leave_the_choice(flags, want):
    from core.cli import build_parser
    from core.cli.train import resolve_config

    args = build_parser().parse_args(["train", "--preset", "modern-bf16", *flags])
    assert resolve_config(args).gradient_checkpointing == want


def test_an_out_of_memory_step_on_auto_recomputes_every_layer_before_it_splits_the_batch(
        tiny_qwen_dir, small_dataset, tmp_path, monkeypatch):
    from transformers import AutoConfig

    from core.train import memory
    from core.estimate import arch_of
    from core.train.engine import train
    from core.train.oom import INJECT_ENV

    cfg = config_for("cpu", model=str(tiny_qwen_dir), gradient_checkpointing="auto", max_steps=2, score_rows=0,
                     eval_fraction=0.0)
    arch = arch_of(AutoConfig.from_pretrained(str(tiny_qwen_dir)))
    monkeypatch.setattr(memory, "usable_gib", lambda config: 10 * estimate_vram(cfg, arch, checkpointed=0).total_gib)
    monkeypatch.setenv(INJECT_ENV, "1")  # a 2-row micro-batch "runs out of memory" whatever is recomputed
    events = []
    out = train(cfg, str(small_dataset), str(tmp_path / "out"), on_event=events.append)
    lines = [e.message for e in events if isinstance(e, ev.LogLine)]
    assert "activation checkpointing: none of 2 layers (≈" in next(l for l in lines if l.startswith("activation"))
    first = [i for i, e in enumerate(events) if isinstance(e, ev.LogLine) and "on all layers from now on" in e.message]
    splits = [i for i, e in enumerate(events) if isinstance(e, ev.OomRecovered)]
    assert len(first) == 1 and splits and first[0] < splits[0]  # the cheaper way out first, once
    assert json.loads((out / "run.json").read_text())["steps"] == 2


def test_a_data_parallel_worker_plans_for_its_own_share_not_half_of_it(four_layer_dir, monkeypatch):
    """The launcher gives each worker its share of the run (core.gpus.per_device: 16k tokens a GPU of 32k); a
    worker's plan must not halve it again. It did: 20 GiB planned where the H200s peaked at 35 GiB."""
    from core.cli.train import _need_gib
    from core.gpus import per_device
    from core.train import memory
    from core.train.model_setup import load_model_from_path, plan_checkpointing

    run = replace(config_for("modern-bf16"), max_length=1024, quantization="none", gpus=2)
    share = per_device(run, 2)[0]
    assert share.batch_tokens == 16384 and share.gpus == 2
    one_gpu = estimate_vram(replace(share, gpus=1), QWEN).total_gib
    assert estimate_vram(run, QWEN).total_gib == one_gpu  # the whole run's config: the estimate takes the share
    assert _need_gib(run) == pytest.approx(estimate_vram(replace(share, gpus=1)).total_gib)  # the CLI's GPU check

    cfg = config_for("cpu", model=str(four_layer_dir), gradient_checkpointing="auto", gpus=2, batch_tokens=4096)
    model = load_model_from_path(cfg, four_layer_dir, lambda e: None)
    from core.estimate import arch_of

    arch = arch_of(model.config)
    need = estimate_vram(replace(cfg, gpus=1), arch, checkpointed=0).total_gib
    monkeypatch.setattr(memory, "usable_gib", lambda config: need / (1 - HEADROOM) * 0.99)  # just too little
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert plan_checkpointing(cfg, model, lambda e: None).layers > 0  # halved again, it would have fitted
