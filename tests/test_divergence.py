"""A run that diverges says so (core/train/divergence.py), and a run refused before it trains leaves nothing behind
(core/runs/output.leave). Issue 29, as a user saw both: `train --preset cpu --lr 0.1` on 40 export rows climbed
4.41 -> 30.3 -> 49.7, ended "finished" and was advised a higher learning rate; `train --model org/missing` left a
lock, an owner record and a .partial folder in the user's folder."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from core.events import Finished, HeldOutScored
from core.train import divergence
from core.train.divergence import FP16_SKIPS, Watch
from core.train.learncheck import describe, verdict
from tests.genexport import generate, write_jsonl
from tests.tinymodels import ROOT


def _watch(losses, grad_norms=None, fp16=False):
    w, found = Watch(fp16_scaler=fp16), []
    for i, loss in enumerate(losses, 1):
        f = w.step(i, loss, None if grad_norms is None else grad_norms[i - 1])
        if f is not None:
            found.append(f)
    return w, found


def test_a_loss_that_climbs_far_above_its_start_is_called_diverged_and_a_healthy_one_is_not():
    w, found = _watch([4.41, 4.30, 6.37, 30.3, 49.7, 26.3])  # the issue's run
    assert [(f.step, f.fatal) for f in found] == [(4, False)]
    assert found[0].why == "the loss climbed from 4.41 to 30.30 (6.9x)"
    assert w.at_end(26.3, 15.6) == ("the loss climbed from 4.41 to 30.30 (6.9x) at step 4; last loss 26.30 and eval "
                                    "loss 15.60 at the end")
    assert _watch([4.41, 30.3, 5.0])[0].at_end(4.0, 4.2) is None  # a spike that settled: not diverged at the end
    assert _watch([2.1, 1.8, 2.6, 1.2, 0.9, 3.1, 0.4])[1] == []  # a learning run's noisy batches
    assert _watch([0.3, 0.95, 1.4, 0.2])[1] == []  # an easy first batch: x4 but not 2 nats above it


def test_non_finite_values_are_fatal_but_fp16s_loss_scaler_may_skip_steps():
    assert [(f.step, f.why, f.fatal) for f in _watch([2.0, 1.9, math.nan, 1.0])[1]] == [
        (3, "the loss became nan", True)]
    assert _watch([2.0, 1.9, 1.8], [1.0, math.inf, 1.0])[1][0].why == "the gradient norm became inf"
    # fp16: the scaler halves its scale and skips the step, the weights stay: a few at the start are normal
    skips = [math.inf] * (FP16_SKIPS - 1) + [1.0] + [math.inf] * (FP16_SKIPS - 1)
    assert _watch([2.0] * len(skips), skips, fp16=True)[1] == []
    found = _watch([2.0] * FP16_SKIPS, [math.inf] * FP16_SKIPS, fp16=True)[1]
    assert [(f.step, f.fatal) for f in found] == [(FP16_SKIPS, True)] and "past fp16's loss scaling" in found[0].why


def test_the_verdict_says_diverged_and_never_asks_for_a_higher_rate_then():
    v, advice = verdict(0.0, 0.0, 0.18, 0.03, epochs=1, lr=0.1)  # the issue's check: worse than the base
    assert v == "diverged" and "lower the learning rate (--lr 0.01" in advice and "higher" not in advice
    v, advice = verdict(0.0, 0.0, 0.20, 0.22, lr=0.1, diverged="the loss climbed from 1.50 to 6.13 (4.1x)")
    assert v == "diverged" and "the loss climbed" in advice and "higher" not in advice
    assert "fp32 on a T4" in verdict(0.0, 0.0, 0.5, 0.1, lr=2e-4, autocast="fp16")[1]
    assert "higher learning rate (--lr 0.0002)" in verdict(0.0, 0.0, 0.20, 0.22, lr=1e-4)[1]  # not diverged: still


def test_the_verdicts_words_match_its_numbers():
    v, advice = verdict(0.0, 0.0, 0.5, 0.95, epochs=1, lr=1e-3)  # similar answers, none exact
    assert v == "partly" and "no more of them are exact" in advice
    assert verdict(0.0, 0.25, 0.5, 0.95)[0] == "learned"  # long answers: exact ones gained, and close
    one = HeldOutScored(rows=1, base_exact=0.0, adapter_exact=1.0, base_similarity=0.2, adapter_similarity=1.0,
                        seconds=3.0, verdict="learned")
    assert describe(one).startswith("held-out check (1 row, 3s)")
    from tui.widgets.training import held_out_text, summary_text

    assert held_out_text(one).plain.startswith("Held-out check (1 row): exact match base 0.00")
    done = Finished(output_dir="/x/out", steps=6, total_steps=6, train_loss=22.2, eval_loss=79.9, stopped_early=False,
                    runtime_s=60, diverged="the loss climbed from 1.50 to 6.13 (4.1x) at step 3")
    shown = summary_text(done).plain
    assert shown.startswith("✘ Diverged after 6/6 steps: the loss climbed") and "Finished" not in shown
    assert "RAISE_LORA_PATH" not in shown and "RAISE_LORA_PATH=/x/out" in summary_text(replace(done, diverged="")).plain


def test_checkpoints_from_the_bad_step_on_are_dropped(tmp_path):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert divergence.drop_checkpoints_from(tmp_path, 4) == [4, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


# -- real runs ------------------------------------------------------------------------------------------------
def _env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **extra}


# Step 3's forward gives NaN (its input embeddings times NaN), as an fp16 overflow or a rate far too high would:
# the loss is NaN, its gradients too, and the clipped update makes every LoRA weight NaN.
NAN_AT_STEP_3 = """
import sys, transformers
real, calls = transformers.Trainer.training_step, []
def training_step(self, model, inputs, *args, **kwargs):
    calls.append(1)
    if len(calls) != 3:
        return real(self, model, inputs, *args, **kwargs)
    hook = model.get_input_embeddings().register_forward_hook(lambda m, i, out: out * float("nan"))
    try:
        return real(self, model, inputs, *args, **kwargs)
    finally:
        hook.remove()
transformers.Trainer.training_step = training_step
from core.cli import main
sys.exit(main())
"""


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_keeps_the_last_good_checkpoint_and_saves_no_adapter(tiny_model_dir, small_dataset,
                                                                                      tmp_path):
    out = tmp_path / "adapter"
    r = subprocess.run([sys.executable, "-c", NAN_AT_STEP_3, "train", "--dataset", str(small_dataset), "--preset",
                        "cpu", "--model", str(tiny_model_dir), "--max-steps", "8", "--save-every", "2",
                        "--max-length", "256", "--output", str(out)],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps[-1].startswith("step 3/8  loss nan"), steps  # stopped at the step that showed it
    assert "error: diverged at step 3: the loss became nan; stopping without saving the adapter" in r.stdout
    assert "finished" not in r.stdout and "RAISE_LORA_PATH" not in r.stdout
    assert "error: the run diverged at step 3: the loss became nan; no adapter was saved" in r.stderr
    assert "hint: lower the learning rate (--lr 0.0001, a tenth), then resume from the last good checkpoint " \
           "(checkpoint-2)" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()  # never renamed into place as a finished adapter
    work = tmp_path / "adapter.partial"
    assert not (work / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in (work / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    from safetensors.torch import load_file

    weights = load_file(str(work / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"))
    assert weights and all(t.isfinite().all() for t in weights.values())  # the last good one: finite
    record = json.loads((work / "run.json").read_text())
    assert record["status"] == "diverged" and record["diverged"] == {"step": 3, "why": "the loss became nan"}

    runs = subprocess.run([sys.executable, "-m", "core", "runs"], capture_output=True, text=True, env=_env(),
                          cwd=tmp_path, timeout=120)
    row = next(line for line in runs.stdout.splitlines() if str(work) in line)
    assert row.startswith("diverged") and "3/8" in row


@pytest.mark.slow
def test_the_lr_01_run_of_the_issue_says_diverged_not_finished(smollm2, tmp_path):
    """The bundled SmolLM2 on 40 export rows at --lr 0.1 (cut to 128 tokens to stay short): the loss climbs, the
    run says so while it trains and at the end, the check's verdict is "diverged" with a lower rate, run.json and
    `runs` say diverged."""
    data = tmp_path / "export.jsonl"
    write_jsonl(generate(seed=1, rows=40), str(data))
    out = tmp_path / "lr01"
    r = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(data), "--preset", "cpu", "--lr",
                        "0.1", "--max-steps", "5", "--max-length", "128", "--score-rows", "1", "--score-seconds",
                        "10", "--output", str(out)],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    said = r.stdout
    assert "warning: diverging at step " in said and "lower the learning rate (--lr 0.01, a tenth)" in said, said
    assert "higher learning rate" not in said
    end = said.strip().splitlines()[-1]
    assert end.startswith("diverged after 5/5 steps") and "is not worth using" in end, said
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "diverged" and record["diverged"]["why"].startswith("the loss climbed from ")
    if "held_out" in record:  # (answered within its time budget)
        assert record["held_out"]["verdict"] == "diverged"
    runs = subprocess.run([sys.executable, "-m", "core", "runs"], capture_output=True, text=True, env=_env(),
                          cwd=tmp_path, timeout=120)
    assert next(line for line in runs.stdout.splitlines() if str(out) in line).startswith("diverged")


def test_the_loss_chart_draws_a_nan_run_without_breaking():
    from tui.widgets.chart import render_chart

    lines = render_chart([([(1, 2.0), (2, 6.1), (3, math.nan), (4, math.inf)], "cyan")], 40, 6, x_max=8)
    text = "\n".join(line.plain for line in lines)
    assert "6.3" in text and "nan" not in text and "inf" not in text  # the axis spans the finite losses
