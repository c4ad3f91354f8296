"""`bench --smoke` (tiny architecture, CPU) as a user runs it: each step's real token count, total tokens ÷ total
time beside the median of per-step rates, in the JSON and the table; no model folder left in the temp folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_smoke_reports_real_token_totals_and_leaves_no_temporary_model(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp)}
    presets = "cpu,cpu:gradient_checkpointing=all,cpu:gradient_checkpointing=auto+batch_tokens=512"
    r = subprocess.run([sys.executable, "-m", "core", "bench", "--smoke", "--presets", presets, "--steps", "4",
                        "--out", str(tmp_path / "bench.json")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    res, forced, auto = json.loads((tmp_path / "bench.json").read_text())["results"]
    # each result says which of the tiny architecture's 2 layers were recomputed, and why
    assert res["checkpointing"]["said"] == "activation checkpointing: none of 2 layers (gradient_checkpointing=none)"
    assert forced["checkpointing"]["layers"] == forced["checkpointing"]["layers_at_end"] == 2
    assert forced["config"]["gradient_checkpointing"] == "all" and forced["mfu_model"] is None  # (no GPU: no MFU)
    assert auto["config"]["gradient_checkpointing"] == "auto" and auto["config"]["batch_tokens"] == 512
    assert auto["checkpointing"]["layers"] == 0 and "GiB usable" in auto["checkpointing"]["said"]  # RAM: plenty
    steps = res["step_tokens"]
    assert len(steps) == res["steps"] == 4
    assert all(2 * 16 <= n <= 2 * 64 for n in steps)  # 2 rows of 16-64 real tokens per step
    assert res["tokens_total"] == sum(steps[res["skipped_steps"]:])
    assert res["tokens_per_s_total"] == pytest.approx(res["tokens_total"] / res["seconds_total"], rel=0.03)  # seconds are rounded in the JSON
    assert res["tokens_per_s"] > 0
    table = r.stdout.splitlines()
    assert table[0] == "cpu  arch tiny  rows 16-64 tokens  4 steps"
    assert table[1].split() == ["preset", "tokens/s", "all", "tokens", "ms/step", "peak", "GiB", "MFU", "ckpt", "loss"]
    row = table[2].split()
    assert row[0] == "cpu" and row[2] == f"{res['tokens_per_s_total']:.0f}" and row[3] == str(res["tokens_total"])
    assert row[7] == "0/2" and table[3].split()[7] == "2/2"
    # the random-weight model and the trainer's folder were temporary: nothing of ours is left
    assert [p.name for p in tmp.iterdir() if p.name.startswith(("arch-", "bench-"))] == []


def test_multi_gpu_benchmark_keeps_the_callers_pythonpath(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("multi_gpu", ROOT / "benchmarks" / "multi_gpu.py")
    multi_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(multi_gpu)
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    assert multi_gpu.child_env()["PYTHONPATH"] == f"{ROOT}{os.pathsep}/tmp/site"
    monkeypatch.delenv("PYTHONPATH")
    assert multi_gpu.child_env()["PYTHONPATH"] == str(ROOT)


def test_the_peer_harness_finds_what_it_imports_from_core():
    """../shared/peers/unsloth (the Unsloth comparison of issue 15) imports the bench's pieces from `core.bench` and
    `core.cli`: every name it takes must still be there, wherever the code moved."""
    import ast
    import importlib

    from tests.tinymodels import ROOT

    peer = ROOT.parent / "shared" / "peers" / "unsloth"
    if not peer.is_dir():
        pytest.skip("no ../shared/peers/unsloth beside this checkout")
    taken = []
    for f in sorted(peer.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "core":
                taken += [(f.name, node.module, a.name) for a in node.names]
    assert taken, "the harness imports nothing from core: this test reads the wrong files"
    for name, module, attr in taken:
        found = importlib.import_module(module)
        if not hasattr(found, attr):  # `from core import bench`: a submodule
            importlib.import_module(f"{module}.{attr}")
        assert hasattr(found, attr), f"{name}: from {module} import {attr}"


def test_the_profile_says_where_the_gpu_waited_and_on_what(tmp_path):
    """The bench profiler's idle report: gaps between kernels, each charged to the CPU ops open when it began."""
    import json

    from core.train.profiling import idle_report

    events = [{"cat": "kernel", "ts": ts, "dur": dur} for ts, dur in [(0, 10), (30, 10), (41, 5), (100, 1)]]
    events += [{"cat": "cpu_op", "tid": 1, "ts": ts, "dur": dur, "name": name}
               for ts, dur, name in [(0, 200, "step"), (5, 20, "aten::item"), (45, 50, "collate")]]
    events += [{"cat": "cpu_op", "tid": 2, "ts": 90, "dur": 5, "name": "backward op"}]
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"traceEvents": events}))
    report = idle_report(trace, steps=1).splitlines()
    assert report[0].startswith("GPU idle 0.1 ms/step of 0.1")  # 20 us after the first kernel, 54 after the third
    assert "       0.05 ms/step  collate" in report and "       0.02 ms/step  aten::item" in report
    assert "       0.07 ms/step  step" in report  # the outermost op open in both gaps


def test_the_profile_names_what_made_the_cpu_wait_for_the_gpu(tmp_path):
    """The sync report: each cudaStreamSynchronize charged to the innermost op and Python line open around it."""
    import json

    from core.train.profiling import sync_report

    events = [{"cat": "cpu_op", "tid": 1, "ts": ts, "dur": dur, "name": name}
              for ts, dur, name in [(0, 200, "step"), (5, 20, "aten::item"), (45, 50, "aten::copy_")]]
    events += [{"cat": "python_function", "tid": 1, "ts": 0, "dur": 200, "name": "trainer.py(9): train"},
               {"cat": "python_function", "tid": 1, "ts": 4, "dur": 30, "name": "readout.py(40): close"}]
    events += [{"cat": "cuda_runtime", "tid": 1, "ts": ts, "dur": 1000, "name": "cudaStreamSynchronize"}
               for ts in (7, 50, 60)]
    events += [{"cat": "cuda_runtime", "tid": 1, "ts": 8, "dur": 1, "name": "cudaLaunchKernel"}]
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"traceEvents": events}))
    report = sync_report(trace, steps=1).splitlines()
    assert report[0].startswith("host waits for the GPU: 3.0 a step, 3.0 ms/step")
    assert report[1:] == ["      2.0/step    2.00 ms/step  aten::copy_ <- trainer.py(9): train",
                          "      1.0/step    1.00 ms/step  aten::item <- readout.py(40): close"]


@pytest.mark.slow
def test_a_profiled_run_writes_each_workers_report(tiny_model_dir, small_dataset, tmp_path, monkeypatch):
    """GENAPTITUDE_TRAINER_PROFILE on a real run: rank0.txt with the step's wall time, launches and the op tables."""
    from core.train import profiling
    from tests.tinymodels import train_tiny

    monkeypatch.setenv(profiling.PROFILE_ENV, str(tmp_path / "prof"))
    monkeypatch.setattr(profiling, "START", 1)
    monkeypatch.setattr(profiling, "STEPS", 2)
    train_tiny(tiny_model_dir, small_dataset, tmp_path / "out", max_steps=4)
    report = (tmp_path / "prof" / "rank0.txt").read_text()
    assert report.startswith("wall ") and "ms/step" in report.splitlines()[0]
    assert "aten::mm" in report or "aten::addmm" in report  # the CPU op table of the profiled steps


@pytest.mark.slow
def test_a_python_profile_says_where_the_cpu_time_goes(tiny_model_dir, small_dataset, tmp_path, monkeypatch):
    """GENAPTITUDE_TRAINER_PROFILE_PYTHON=1: cProfile over the same steps, time by package and the costliest functions."""
    from core.train import profiling
    from tests.tinymodels import train_tiny

    monkeypatch.setenv(profiling.PROFILE_ENV, str(tmp_path / "prof"))
    monkeypatch.setenv(f"{profiling.PROFILE_ENV}_PYTHON", "1")
    monkeypatch.setattr(profiling, "START", 1)
    monkeypatch.setattr(profiling, "STEPS", 2)
    train_tiny(tiny_model_dir, small_dataset, tmp_path / "out", max_steps=4)
    report = (tmp_path / "prof" / "rank0.txt").read_text().splitlines()
    assert report[0].startswith("wall ") and "own time by package" in report[0]
    packages = {line.split()[-1] for line in report[1:report.index("")]}
    assert {"torch", "transformers", "builtin"} <= packages  # the step's own Python, by whose code it is
    assert any(" core: " in line and "calls" not in line for line in report)  # our functions are named


def test_bench_overrides_read_each_setting_as_its_flag_does():
    """A list setting is a tuple of names, not of letters (lora_targets=q_proj once trained on ('q','_','p',...));
    a comma inside a preset's overrides belongs to its list, a comma before a preset's name starts the next one."""
    from core.cli.bench import preset_specs
    from core.errors import InputError
    from core.train.bench import parse_overrides

    assert parse_overrides("lora_targets=q_proj") == {"lora_targets": ("q_proj",)}
    assert parse_overrides("batch_tokens=512+mask_padding=false+lora_targets=q_proj,v_proj+lr=2e-4") == {
        "batch_tokens": 512, "mask_padding": False, "lora_targets": ("q_proj", "v_proj"), "lr": 2e-4}
    assert parse_overrides("gradient_checkpointing=true") == {"gradient_checkpointing": "all"}
    assert preset_specs("cpu,cpu:lora_targets=q_proj,v_proj,old-settings") == [
        "cpu", "cpu:lora_targets=q_proj,v_proj", "old-settings"]
    with pytest.raises(InputError, match="batch_tokens must be a whole number"):
        parse_overrides("batch_tokens=lots")
    with pytest.raises(InputError, match="unknown setting 'lora_target'"):
        parse_overrides("lora_target=q_proj")


def test_cli_flags_and_bench_overrides_read_text_the_same_way():
    from core.cli import build_parser
    from core.train.bench import parse_overrides

    args = build_parser().parse_args(["train", "--lora-targets", "q_proj,v_proj", "--no-mask-padding",
                                      "--batch-tokens", "512"])
    assert (args.lora_targets, args.mask_padding, args.batch_tokens) == (("q_proj", "v_proj"), False, 512)
    assert parse_overrides("lora_targets=q_proj,v_proj+mask_padding=no+batch_tokens=512") == {
        "lora_targets": args.lora_targets, "mask_padding": False, "batch_tokens": 512}
