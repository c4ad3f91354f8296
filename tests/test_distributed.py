"""Data-parallel training (`train --gpus N`) on CPU: N worker processes joined by gloo, the same engine as on GPUs.

2 workers with the same effective batch must step exactly as 1 process (same data per update, same losses, same
gradients, same adapter); rank 0 alone writes; a stop reaches every worker at the same step; a dying worker
takes the run down with its own message instead of leaving the others waiting forever.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from core.errors import TrainerError
from core.presets import config_for
from core.runs.workers import child_env, run_workers
from core.gpus import per_device
from tests.conftest import ROOT
from tests.test_reliability import _cli, _wait_for


def _train(tiny_model_dir, small_dataset, out, *extra):
    r = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(small_dataset), "--preset", "cpu",
                        "--model", str(tiny_model_dir), "--max-steps", "6", "--batch-size", "2", "--grad-accum", "4",
                        "--eval-fraction", "0.1", "--output", str(out), "--json", "--no-cpu-bf16", *extra],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_two_workers_step_exactly_as_one_process_with_the_same_effective_batch(tiny_model_dir, small_dataset,
                                                                              tmp_path):
    one = _train(tiny_model_dir, small_dataset, tmp_path / "one")
    two = _train(tiny_model_dir, small_dataset, tmp_path / "two", "--gpus", "2")

    def steps(events):
        return [(e["step"], e["loss"], e["grad_norm"], e["epoch"]) for e in events if e["event"] == "step"]

    s1, s2 = steps(one), steps(two)
    assert [s[0] for s in s1] == [s[0] for s in s2] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(s1, s2):
        assert b[1] == pytest.approx(a[1], rel=1e-4)  # loss: the same rows in each update
        assert b[2] == pytest.approx(a[2], rel=1e-3)  # gradient norm: the loss is scaled back for DDP's average
        assert b[3] == pytest.approx(a[3])  # the same number of updates per epoch
    f1, f2 = one[-1], two[-1]
    assert f1["event"] == f2["event"] == "finished"
    assert f2["eval_loss"] == pytest.approx(f1["eval_loss"], rel=1e-4)

    logs = [e["message"] for e in two if e["event"] == "log"]
    assert "data-parallel run on 2 CPU processes: one worker process each, rank 0 writes the adapter" in logs
    assert "same effective batch on 2 workers: gradient accumulation 4 → 2 per GPU" in logs
    started = next(e for e in two if e["event"] == "run_started")
    assert started["config"]["gpus"] == 2 and started["config"]["grad_accum"] == 2

    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys() and len(w1) > 0
    for k in w1:
        assert (w1[k] - w2[k]).abs().max().item() < 1e-5, k
    # rank 0 alone wrote: one metrics line per step, one record, no leftover work folder
    metrics = [json.loads(l) for l in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["event"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert json.loads((tmp_path / "two" / "run.json").read_text())["config"]["gpus"] == 2
    assert not (tmp_path / "two.partial").exists()


@pytest.mark.slow
def test_a_stop_reaches_every_worker_and_saves_a_resumable_checkpoint(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "a"
    proc = _cli(["train", "--dataset", str(small_dataset), "--preset", "cpu", "--model", str(tiny_model_dir),
                 "--max-steps", "200", "--batch-size", "2", "--grad-accum", "2", "--gpus", "2",
                 "--output", str(out), "--json"])
    _wait_for(proc, lambda e: e["event"] == "step" and e["step"] == 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    finished = json.loads(stdout.splitlines()[-1])
    assert finished["event"] == "finished" and finished["stopped_early"] and finished["steps"] < 200
    ckpt = out / "checkpoints" / f"checkpoint-{finished['steps']}"
    assert (ckpt / "trainer_state.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}


def test_a_worker_that_dies_stops_the_others_and_its_message_is_kept(tmp_path):
    # worker 0 would wait forever (like a rank blocked in an all-reduce); worker 1 fails after saying why
    script = ("import os, sys, time\n"
              "if os.environ['RANK'] == '1':\n"
              "    print('CUDA error: an illegal memory access was encountered', file=sys.stderr); sys.exit(3)\n"
              "print('{\"event\": \"log\", \"message\": \"rank 0 up\", \"level\": \"info\"}', flush=True)\n"
              "time.sleep(600)\n")
    seen = []
    envs = [child_env({"RANK": str(r)}) for r in range(2)]
    with pytest.raises(TrainerError) as err:
        run_workers([sys.executable, "-c", script], envs, seen.append, threading.Event(), what="worker")
    assert err.value.message == "worker 1 of 2 ended with exit code 3"
    assert "an illegal memory access" in err.value.hint
    assert [e.message for e in seen] == ["rank 0 up"]


def test_a_stray_worker_line_is_shown_and_the_run_followed_to_its_end():
    # a library prints to the worker's stdout a line that starts like an event but is not JSON
    script = ("import json\n"
              "print('{oops', flush=True)\n"
              "print(json.dumps({'event': 'log', 'message': 'still training', 'level': 'info'}), flush=True)\n"
              "print(json.dumps({'event': 'finished', 'output_dir': 'out', 'steps': 3, 'total_steps': 3,\n"
              "                  'train_loss': 1.5, 'eval_loss': None, 'stopped_early': False, 'runtime_s': 0.1}))\n")
    seen = []
    finished = run_workers([sys.executable, "-c", script], [child_env()], seen.append, threading.Event())
    assert [(e.kind, getattr(e, "message", None)) for e in seen] == [
        ("log", "{oops"), ("log", "still training"), ("finished", None)]
    assert (finished.steps, finished.train_loss) == (3, 1.5)


@pytest.mark.parametrize("preset, n, changed, note", [
    ("8gb", 2, {"grad_accum": 1}, "gradient accumulation 2 → 1 per GPU"),
    ("modern-bf16", 2, {"batch_tokens": 16384, "batch_size": 128}, "micro-batches of ≤32,768 → ≤16,384 tokens per GPU"),
    ("cpu", 2, {"batch_size": 1}, "batch 2 → 1 rows per GPU"),
    ("t4-fp32", 3, {}, "batch 4 × 1 cannot be split 3 ways: each GPU keeps it, the effective batch grows 3×"),
    ("modern-bf16:each", 4, {}, "each GPU keeps ≤32,768 tokens (≤256 rows) × 1 per update: the effective batch is 4× "
                                "one GPU's (--gpu-batch each)"),
])
def test_the_effective_batch_is_kept_across_gpus(preset, n, changed, note):
    preset, _, gpu_batch = preset.partition(":")
    cfg = config_for(preset, gpus=n, gpu_batch=gpu_batch or "split")
    split, said = per_device(cfg, n)
    assert said == note
    for key, value in changed.items():
        assert getattr(split, key) == value
    tokens = lambda c: (c.batch_tokens or c.batch_size) * c.grad_accum  # noqa: E731
    assert tokens(split) * (n if changed else 1) == tokens(cfg)


@pytest.mark.slow
def test_more_gpus_than_there_are_is_refused_before_anything_loads(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(ROOT / "dataset.jsonl"),
                        "--preset", "8gb", "--gpus", "4", "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2
    assert "needs an NVIDIA GPU" in r.stderr or "4 GPUs asked for" in r.stderr
    r = subprocess.run([sys.executable, "-m", "core", "train", "--gpus", "two"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "'two' is not a number of GPUs (give e.g. 2, or all)" in r.stderr
