"""Did the run learn? The after-run check (core/train/learncheck.py), the step plan for small exports (core/data/batching.py),
the learning rate the GPU presets pick per model (core/presets.auto_lr), and what a user reads at the end of a run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.data.batching import FEW_UPDATES, few_updates_warning, plan_for, plan_updates
from core.presets import PRESETS, auto_lr, config_for
from core.train.learncheck import verdict
from tests.conftest import ROOT
from tests.tui_fakes import NO_GPU, FakeEngine, screen_text, wait_until


def test_verdicts_say_in_words_whether_the_adapter_learned():
    assert verdict(0.0, 0.95, 0.2, 0.98) == ("learned", "")
    assert verdict(0.0, 0.1, 0.2, 0.93)[0] == "learned"  # long answers: similarity counts
    v, advice = verdict(0.0, 0.0, 0.20, 0.22, epochs=1, lr=7.7e-4)
    assert v == "not learned" and "barely beats the base model" in advice
    assert "--epochs 3" in advice and "--lr 0.00154" in advice
    v, advice = verdict(0.0, 0.3, 0.2, 0.6, epochs=2, lr=1e-3)
    assert v == "partly" and "--epochs 6" in advice
    assert verdict(0.5, 0.5, 0.92, 0.92)[0] == "base knows"
    assert verdict(0.5, 0.9, 0.91, 0.99)[0] == "learned"


def test_a_small_export_gets_enough_updates_and_a_large_one_keeps_its_batches():
    small = [257] * 260  # the 300-row export of issue 18, 40 rows held out
    old = plan_updates(small, batch_tokens=32768, batch_size=256, grad_accum=1, epochs=1, min_updates=0)
    assert old.updates <= 3  # what the old presets trained: nothing to learn from
    plan = plan_for(config_for("modern-bf16"), small)
    assert plan.updates >= 200 and plan.batch_tokens == 512 and plan.grad_accum == 1  # one 257-token row a step
    eight = plan_for(config_for("8gb"), small)
    assert eight.grad_accum == 1 and eight.updates >= 200  # accumulation goes first
    rows = plan_for(config_for("t4-fp32"), small)
    assert rows.batch_tokens == 0 and rows.batch_size == 1 and rows.updates == 260
    big = plan_for(config_for("modern-bf16"), [257] * 60000)
    assert big.batch_tokens == 32768 and big.updates >= 200
    assert plan_for(config_for("modern-bf16", max_steps=7), small).updates == 7


def test_too_few_updates_are_warned_with_the_way_out():
    tiny = plan_for(config_for("modern-bf16"), [300] * 20)
    assert tiny.updates < FEW_UPDATES
    warning = few_updates_warning(tiny, 20)
    assert f"only {tiny.updates} optimizer steps (20 rows)" in warning and "more epochs" in warning
    assert few_updates_warning(plan_for(config_for("modern-bf16"), [300] * 300), 300) is None


def test_gpu_presets_pick_the_learning_rate_from_the_model():
    assert all(PRESETS[p].config.lr == 0 for p in ("modern-bf16", "8gb", "t4-fp16"))
    assert PRESETS["t4-fp32"].config.lr == 1e-3 and "auto" in PRESETS["t4-fp32"].reasons["lr"]  # says why not auto
    assert auto_lr("qwen2", 1536) == pytest.approx(7.66e-4, rel=0.01)  # the default GPU model
    assert auto_lr("llama", 576) == pytest.approx(1.98e-3, rel=0.01)  # SmolLM2-135M, measured best on the H200
    assert auto_lr("llama", 4096) < auto_lr("llama", 2048) < auto_lr("llama", 576)  # wider: smaller rate
    assert PRESETS["cpu"].config.lr == 1e-3
    config_for("modern-bf16").validate()  # 0 (auto) is a valid value
    for name in ("lr", "lora_alpha", "min_updates", "max_grad_norm"):
        assert name in PRESETS["t4-fp16"].reasons  # every GPU preset says why it learns as it does


def _cli(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_a_run_that_did_not_learn_says_so_at_the_end(tiny_model_dir, small_dataset, tmp_path):
    """A tiny random model at a learning rate too small to move anything: the last lines say it did not learn,
    with exact match and similarity of base against adapter, and run.json keeps the check."""
    out = tmp_path / "adapter"
    r = _cli("train", "--dataset", str(small_dataset), "--preset", "cpu", "--model", str(tiny_model_dir),
             "--max-steps", "2", "--lr", "1e-6", "--eval-fraction", "0.2", "--score-rows", "4",
             "--max-length", "256", "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-5:]
    check = next(line for line in last if line.startswith("held-out check"))
    assert "(4 rows" in check and "exact match base 0.00 → adapter 0.00" in check and check.endswith("not learned")
    assert any(line.startswith("warning: the adapter barely beats the base model") and "--epochs" in line
               for line in last)
    record = json.loads((out / "run.json").read_text())
    assert record["held_out"]["verdict"] == "not learned" and record["held_out"]["rows"] == 4


@pytest.mark.anyio
async def test_finish_panel_shows_base_against_adapter(tmp_path):
    from tests.test_tui_app import make_app

    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("t")
        await wait_until(pilot, lambda: app.training.finished is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "Held-out check (8 rows): exact match base 0.00 → adapter 0.88" in text
        assert "similarity 0.21 → 0.97  learned" in text


@pytest.mark.slow
@pytest.mark.anyio
async def test_preset_tab_shows_the_optimizer_steps_and_warns_when_too_few(tmp_path):
    from tests.test_tui_app import make_app

    app = make_app(FakeEngine(NO_GPU), tmp_path)
    async with app.run_test(size=(120, 50)) as pilot:
        await wait_until(pilot, lambda: app.presets.data_rows is not None)
        await pilot.press("2")
        app.presets.set_data(300, 257)
        await pilot.pause()
        assert "≈ 143 optimizer steps for 300 rows × 1 epoch" in screen_text(app)  # cpu preset: 2 rows a step
        app.presets.set_data(30, 257)
        await pilot.pause()
        assert "only 14 optimizer steps (28 rows): too few for the adapter to learn" in screen_text(app)


def test_the_preset_tab_shows_and_takes_an_automatic_learning_rate():
    from tui.widgets.presets import parse, shown

    assert shown("lr", 0.0) == "auto" and shown("lr", 1e-3) == "0.001"
    assert parse("lr", float, "auto") == (0.0, "") and parse("lr", float, "5e-4") == (5e-4, "")
