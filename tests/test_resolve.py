"""core.train.resolve: each setting a config leaves to the run, as the run, the TUI and doctor see it (no torch)."""
from __future__ import annotations

import subprocess
import sys

from core.presets import auto_lr, config_for
from core.train import resolve
from tests.conftest import ROOT


def test_the_cpu_preset_trains_bf16_only_where_the_cpu_has_amx_units():
    amx = resolve.before_load(config_for("cpu"), amx=True)
    assert (amx.config.compute_dtype, amx.config.autocast) == ("bfloat16", "bf16")
    assert amx.to_dict()["precision"]["said"].startswith("bf16 on this CPU's AMX units")
    plain = resolve.before_load(config_for("cpu"), amx=False)
    assert plain.config == config_for("cpu") and plain.choices == []
    assert resolve.precision_words(plain.config) == "fp32"
    assert resolve.before_load(config_for("cpu", cpu_bf16=False), amx=True).choices == []  # --no-cpu-bf16


def test_quantization_auto_is_decided_before_loading_from_the_size_and_the_memory():
    gpu = config_for("modern-bf16")  # quantization auto, Qwen2.5-1.5B
    assert resolve.before_load(gpu).config.quantization == "nf4"  # memory unknown: the safe side
    roomy = resolve.before_load(gpu, usable_gib=70.0)
    assert roomy.config.quantization == "none" and "unquantised" in roomy.to_dict()["quantization"]["said"]
    assert resolve.before_load(config_for("modern-bf16", quantization="nf4")).choices == []  # as set


def test_learning_rate_batches_and_the_data_parallel_share_say_why():
    cfg, lr = resolve.learning_rate(config_for("modern-bf16"), "llama", 576)
    assert cfg.lr == lr.value == auto_lr("llama", 576) and "llama model 576 wide" in lr.said
    assert resolve.learning_rate(config_for("cpu"), "llama", 576)[1] is None  # the preset's 1e-3 stands
    small, fitted, few = resolve.batches(config_for("modern-bf16", min_updates=100), [300] * 50, 1)
    assert fitted is not None and "small dataset (50 rows)" in fitted.said
    assert (small.batch_tokens, small.grad_accum) != (config_for("modern-bf16").batch_tokens,
                                                       config_for("modern-bf16").grad_accum)
    two = config_for("modern-bf16", gpus=2)
    share, said = resolve.per_device(two)
    assert said.said == f"same effective batch on 2 workers: {said.value}" and share != two
    assert resolve.per_device(config_for("modern-bf16"))[1] is None  # one GPU: nothing to share


def test_the_pre_load_half_imports_no_torch():
    code = ("import sys; from core.train.resolve import before_load; from core.presets import auto_lr, config_for; "
            "before_load(config_for('modern-bf16')); before_load(config_for('cpu')); "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
