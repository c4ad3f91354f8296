"""The real engine on CPU with tiny models built here: files written, events sent, stop/resume, refusals."""
from __future__ import annotations

import json

import pytest

from core import events as ev
from core.errors import InputError
from core.presets import config_for
from core.train.engine import train
from tests.tinymodels import train_tiny as run


def kinds(events):
    return [e.kind for e in events]


@pytest.mark.slow
def test_cpu_run_writes_a_loadable_adapter_and_reports_events(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "adapter"
    path, got = run(tiny_model_dir, small_dataset, out)

    assert path == out.resolve()
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "run.json",
            "metrics.jsonl"} <= names
    assert not (tmp_path / "adapter.partial").exists()
    assert "checkpoints" not in names  # a finished run keeps no resume point

    k = kinds(got)
    assert k.index("run_started") < k.index("step") < k.index("finished")
    assert k[-1] == "finished"
    steps = [e for e in got if isinstance(e, ev.StepLogged)]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert all(s.total_steps == 4 and s.tokens_per_s > 0 and s.loss > 0 for s in steps)
    assert steps[-1].eta_s == 0
    assert any(isinstance(e, ev.EvalLogged) for e in got)
    mem = [e for e in got if isinstance(e, ev.MemorySample)]
    assert mem and mem[-1].process_rss_gib > 0

    record = json.loads((out / "run.json").read_text())
    assert record["steps"] == 4 and record["config"]["preset"] == "cpu"
    assert len(record["dataset"]["sha256"]) == 64 and record["dataset"]["format"] == "alpaca"
    assert record["versions"]["transformers"] and record["final"]["train_loss"] > 0
    # what the run chose for the settings it was left (core/train/resolve.py), each as its log line said it
    said = {e.message for e in got if isinstance(e, ev.LogLine)}
    assert "gradient_checkpointing" in record["resolved"]
    assert all(choice["said"] in said for choice in record["resolved"].values())
    metric_steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()
                    if json.loads(l)["event"] == "step"]
    assert metric_steps == [1, 2, 3, 4]

    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    import torch

    ids = torch.tensor([[1, 2, 3]])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        before = base(input_ids=ids).logits
        model = PeftModel.from_pretrained(base, str(out))
        after = model(input_ids=ids).logits
        with model.disable_adapter():
            off = model(input_ids=ids).logits
    # LoRA starts as a no-op (B = 0): only weights that trained and were saved change what the model answers
    assert (after - before).abs().max() > 0, "the saved adapter does not change the model"
    assert torch.equal(off, before)  # and it is an adapter over the untouched base, not new base weights


@pytest.mark.slow
def test_events_round_trip_through_json(tiny_model_dir, small_dataset, tmp_path):
    _, got = run(tiny_model_dir, small_dataset, tmp_path / "a", max_steps=2)
    for e in got:
        assert ev.from_json(e.to_json()) == e


@pytest.mark.slow
def test_nf4_layers_train_on_cpu(tiny_model_dir, small_dataset, tmp_path):
    _, got = run(tiny_model_dir, small_dataset, tmp_path / "q", quantization="nf4", max_steps=3)
    logs = [e.message for e in got if isinstance(e, ev.LogLine)]
    assert any("4-bit NF4" in m for m in logs), logs
    steps = [e for e in got if isinstance(e, ev.StepLogged)]
    assert len(steps) == 3 and all(s.loss == s.loss and s.loss < 100 for s in steps)  # finite
    from safetensors import safe_open

    with safe_open(str(tmp_path / "q" / "adapter_model.safetensors"), "pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
    assert dtypes == {"torch.float32"}  # TRL casts QLoRA adapters to bf16; we keep fp32 trainable weights


@pytest.mark.slow
def test_existing_adapter_is_never_overwritten_silently(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "a"
    run(tiny_model_dir, small_dataset, out, max_steps=1)
    before = (out / "adapter_model.safetensors").read_bytes()
    got = []
    cfg = config_for("cpu", model=str(tiny_model_dir), max_steps=1)
    with pytest.raises(InputError, match="already holds an adapter"):
        train(cfg, str(small_dataset), str(out), on_event=got.append)
    assert got and isinstance(got[-1], ev.Failed) and "--overwrite" in got[-1].hint
    assert (out / "adapter_model.safetensors").read_bytes() == before
    train(cfg, str(small_dataset), str(out), overwrite=True)
    assert not any(p.name.startswith("a.old") for p in tmp_path.iterdir())


@pytest.mark.slow
def test_stop_saves_adapter_and_checkpoint_and_resume_finishes_exactly(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "a"
    _, got = run(tiny_model_dir, small_dataset, out, stop_at=2, max_steps=5)
    fin = got[-1]
    assert isinstance(fin, ev.Finished) and fin.stopped_early and fin.steps == 2
    assert (out / "adapter_model.safetensors").is_file()
    assert fin.checkpoint_dir and (out / "checkpoints" / "checkpoint-2" / "optimizer.pt").is_file()

    resumed: list[ev.Event] = []
    cfg = config_for("cpu", model=str(tiny_model_dir), max_steps=5, batch_size=4)
    train(cfg, str(small_dataset), str(out), on_event=resumed.append, resume=True)
    start = next(e for e in resumed if isinstance(e, ev.RunStarted))
    assert start.resumed_from_step == 2 and start.total_steps == 5
    assert [e.step for e in resumed if isinstance(e, ev.StepLogged)] == [3, 4, 5]
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["event"] == "step"]
    assert steps == [1, 2, 3, 4, 5]
    assert not (out / "checkpoints").exists()


def test_gpu_preset_without_gpu_is_refused_before_loading(small_dataset, tmp_path):
    got = []
    with pytest.raises(InputError) as info:
        train(config_for("modern-bf16"), str(small_dataset), str(tmp_path / "a"), on_event=got.append)
    text = info.value.render()
    assert "needs an NVIDIA GPU" in text and "--preset cpu" in text
    assert isinstance(got[-1], ev.Failed)
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()


def test_bad_settings_are_all_listed_at_once(small_dataset, tmp_path):
    cfg = config_for("cpu", batch_size=0, lr=5.0, lora_r=0)
    with pytest.raises(InputError) as info:
        train(cfg, str(small_dataset), str(tmp_path / "a"))
    text = info.value.render()
    assert "3 problem(s)" in text and "batch size" in text and "learning rate" in text and "LoRA r" in text


def test_unknown_lora_target_names_the_real_layers(tiny_model_dir, small_dataset, tmp_path):
    cfg = config_for("cpu", model=str(tiny_model_dir), lora_targets="qkv_proj")
    with pytest.raises(InputError) as info:
        train(cfg, str(small_dataset), str(tmp_path / "a"))
    assert "qkv_proj" in info.value.message and "q_proj" in info.value.hint
