"""Faults: out of memory mid-run, SIGKILL then --resume, SIGINT stop. Real engine, tiny model, CPU."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from core import events as ev
from core.presets import config_for
from core.train.engine import train
from core.train.oom import INJECT_ENV
from tests.conftest import ROOT


@pytest.mark.slow
def test_oom_halves_the_micro_batch_and_keeps_the_step_and_the_gradients(tiny_model_dir, small_dataset, tmp_path,
                                                                         monkeypatch):
    cfg = config_for("cpu", model=str(tiny_model_dir), max_steps=4, batch_size=4, group_by_length=False,
                     eval_fraction=0.0)
    ref: list[ev.Event] = []
    train(cfg, str(small_dataset), str(tmp_path / "ref"), on_event=ref.append)

    monkeypatch.setenv(INJECT_ENV, "1")  # any micro-batch over 1 row "runs out of memory"
    got: list[ev.Event] = []
    train(cfg, str(small_dataset), str(tmp_path / "oom"), on_event=got.append)

    ooms = [e for e in got if isinstance(e, ev.OomRecovered)]
    assert [(o.old_batch_size, o.new_batch_size, o.old_grad_accum, o.new_grad_accum) for o in ooms] == \
        [(4, 2, 1, 2), (2, 1, 2, 4)]  # halves until it fits, then never goes back up
    assert all(o.step == 1 for o in ooms)
    steps = [e for e in got if isinstance(e, ev.StepLogged)]
    ref_steps = [e for e in ref if isinstance(e, ev.StepLogged)]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    # Same effective batch: the first step's loss and gradient norm are those of the unsplit run (up to float
    # rounding); later steps stay on the same curve (Adam amplifies rounding in near-zero LoRA gradients).
    assert abs(steps[0].loss - ref_steps[0].loss) < 1e-4
    assert abs(steps[0].grad_norm - ref_steps[0].grad_norm) < 1e-3 * ref_steps[0].grad_norm
    for a, b in zip(steps, ref_steps):
        assert abs(a.loss - b.loss) < 0.01 * b.loss, (a.loss, b.loss)


def _cli(args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "core", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def _wait_for(proc, predicate, timeout=240):
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if predicate(json.loads(line)):
            return lines
    raise AssertionError(f"event not seen; got {lines[-3:]}")


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_finishes_with_the_same_steps(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "a"
    args = ["train", "--dataset", str(small_dataset), "--preset", "cpu", "--model", str(tiny_model_dir),
            "--max-steps", "6", "--batch-size", "2", "--save-every", "2", "--output", str(out), "--json"]
    proc = _cli(args)
    _wait_for(proc, lambda e: e["event"] == "step" and e["step"] == 3)  # checkpoint-2 exists, step 3 done
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists() and (tmp_path / "a.partial" / "checkpoints" / "checkpoint-2").is_dir()

    r = subprocess.run([sys.executable, "-m", "core", *args, "--resume"], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(l) for l in r.stdout.splitlines()]
    start = next(e for e in events if e["event"] == "run_started")
    assert start["resumed_from_step"] == 2 and start["total_steps"] == 6
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4, 5, 6]
    history = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in history if e["event"] == "step"] == [1, 2, 3, 4, 5, 6]  # lost only step 3
    assert (out / "adapter_model.safetensors").is_file() and not (tmp_path / "a.partial").exists()


@pytest.mark.slow
def test_sigint_stops_cleanly_and_leaves_a_loadable_adapter(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "a"
    proc = _cli(["train", "--dataset", str(small_dataset), "--preset", "cpu", "--model", str(tiny_model_dir),
                 "--max-steps", "200", "--batch-size", "2", "--output", str(out), "--json"])
    _wait_for(proc, lambda e: e["event"] == "step" and e["step"] == 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    finished = json.loads(stdout.splitlines()[-1])
    assert finished["event"] == "finished" and finished["stopped_early"] and finished["steps"] < 200
    assert "SIGINT: finishing this step" in stderr

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(out))
    assert any("lora_B" in n for n, _ in model.named_parameters())
    assert (out / "checkpoints" / f"checkpoint-{finished['steps']}").is_dir()
