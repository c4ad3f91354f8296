"""bf16 on CPUs with AMX units (`cpu_bf16`, on in the cpu preset): the rule (core.hardware.cpu_amx_bf16 and
core.train.model_setup.resolve_cpu_precision) and, where this machine has AMX, a real run of it."""
from __future__ import annotations

import json

import pytest

from core import events as ev
from core.hardware import cpu_amx_bf16
from core.presets import config_for
from core.train import model_setup
from core.train.engine import train


def _resolved(monkeypatch, amx: bool, **overrides):
    monkeypatch.setattr("core.hardware.cpu_amx_bf16", lambda: amx)
    said: list = []
    return model_setup.resolve_cpu_precision(config_for("cpu", **overrides), said.append), said


def test_the_cpu_preset_takes_bf16_only_where_the_cpu_has_amx(monkeypatch):
    config, said = _resolved(monkeypatch, amx=True)
    assert (config.autocast, config.compute_dtype, config.lora_dtype) == ("bf16", "bfloat16", "float32")
    assert [e.message for e in said] == ["bf16 on this CPU's AMX units: base weights in bf16, bf16 autocast, LoRA "
                                         "weights in fp32 (--no-cpu-bf16: fp32 throughout)"]
    config, said = _resolved(monkeypatch, amx=False)  # AVX-512 BF16 alone was 1.5x slower than fp32: fp32 there
    assert (config.autocast, config.compute_dtype, said) == ("no", "float32", [])
    config, said = _resolved(monkeypatch, amx=True, cpu_bf16=False)  # --no-cpu-bf16
    assert (config.autocast, config.compute_dtype, said) == ("no", "float32", [])


def test_oneDNN_held_below_amx_counts_as_no_amx(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu_amx_bf16() is False


def test_bf16_autocast_is_a_valid_cpu_setting_and_fp16_is_not():
    config_for("cpu", autocast="bf16", compute_dtype="bfloat16").validate()
    with pytest.raises(Exception, match="1 problem"):
        config_for("cpu", autocast="fp16").validate()


@pytest.mark.skipif(not cpu_amx_bf16(), reason="this CPU has no AMX bf16 units")
def test_a_run_on_an_amx_cpu_trains_in_bf16_and_saves_fp32_lora_weights(tiny_model_dir, small_dataset, tmp_path):
    from safetensors import safe_open

    got: list = []
    out = tmp_path / "adapter"
    train(config_for("cpu", model=str(tiny_model_dir), max_steps=6, score_rows=0), str(small_dataset), str(out),
          on_event=got.append)
    assert any(isinstance(e, ev.LogLine) and e.message.startswith("bf16 on this CPU's AMX units") for e in got)
    record = json.loads((out / "run.json").read_text())
    assert (record["config"]["autocast"], record["config"]["compute_dtype"]) == ("bf16", "bfloat16")
    losses = [e.loss for e in got if isinstance(e, ev.StepLogged)]
    assert len(losses) == 6 and all(loss == loss and loss < 20 for loss in losses)  # finite, not diverged
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {__import__("torch").float32}
