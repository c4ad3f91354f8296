"""The CLI on a box with several GPUs, as a user runs it: a fake NVML (tests/fake_nvml/pynvml.py, first on
PYTHONPATH) reports two H200s, GPU 0 holding another user's 60 GiB job. Subprocesses, because the point is what
happens in a fresh process before torch starts CUDA."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import gpus
from core.train.distributed import worker_envs
from tests.test_gpus import BOX

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)


ROOT = Path(__file__).resolve().parent.parent
TWO_H200 = [{"total_gib": 139.8, "used_gib": 60.2, "processes": [[4242, 59.7]]}, {"total_gib": 139.8, "used_gib": 0.6}]


def cli(args: list[str], tmp_path: Path, gpu_list=TWO_H200, extra_env: dict | None = None, code: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "fake_nvml"), str(ROOT)]), HF_HUB_OFFLINE="1",
               FAKE_NVML_GPUS=json.dumps(gpu_list), FAKE_NVML_LOG=str(tmp_path / "nvml.log"), **(extra_env or {}))
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "core", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_doctor_says_which_gpu_a_run_uses_and_why(tmp_path):
    r = cli(["doctor"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == ("GPU 0: NVIDIA H200, 79.6 of 139.8 GiB free; 1 other process holds 59.7 GiB "
                        "(compute capability 9.0, bf16 yes)")
    assert lines[1].startswith("GPU 1: NVIDIA H200, 139.2 of 139.8 GiB free (")
    assert ("a run uses GPU 1 (NVIDIA H200): the most free memory of 2 GPUs, 139.2 GiB free (GPU 0 79.6 GiB free)"
            in lines)
    assert "    (it sets CUDA_VISIBLE_DEVICES=1 for the run; another choice: --gpu-ids 0)" in lines
    # bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" (printed on import on a CPU with
    # AVX-512 bf16, as this one) is not the first line any more, nor any other
    assert "gemm_4bit_forward" not in r.stdout + r.stderr and "kernels" not in r.stderr


def test_doctor_with_gpu_ids_warns_about_the_busy_gpu_and_refuses_one_that_is_not_there(tmp_path):
    r = cli(["doctor", "--gpu-ids", "0"], tmp_path)
    assert "a run uses GPU 0, as asked (--gpu-ids 0)" in r.stdout
    assert "warning: GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have 79.6 GiB" in r.stdout
    r = cli(["doctor", "--gpu-ids", "3"], tmp_path)
    assert r.returncode == 2
    assert "error: --gpu-ids 3: GPU 3 is not here; the GPUs are 0, 1" in r.stderr


def test_doctor_respects_the_users_cuda_visible_devices(tmp_path):
    r = cli(["doctor", "--json"], tmp_path, extra_env={"CUDA_VISIBLE_DEVICES": "0"})
    out = json.loads(r.stdout)
    assert out["run_gpus"] == [0]  # GPU 1 is freer, but the user gave us GPU 0 only
    assert out["run_gpus_reason"] == "GPU 0, the only one (CUDA_VISIBLE_DEVICES=0)"
    assert out["gpu_warnings"] == ["GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have "
                                   "79.6 GiB"]


# Runs `core.cli.main` in a fresh process, then prints the variable the run's CUDA would read.
AFTER_MAIN = ("import os, sys; from core.cli import main; rc = main(sys.argv[1:]); "
              "print('CUDA_VISIBLE_DEVICES=' + os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>'), "
              "os.environ.get('CUDA_DEVICE_ORDER')); sys.exit(rc)")


def test_train_pins_the_freest_gpu_before_torch_is_imported(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    r = cli(["train", "--preset", "modern-bf16", "--dataset", "d.jsonl", "--json"], tmp_path, code=AFTER_MAIN)
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert events[0] == {"event": "log", "level": "info", "message": "GPU 1 (NVIDIA H200): the most free memory of 2 "
                         "GPUs, 139.2 GiB free (GPU 0 79.6 GiB free); CUDA_VISIBLE_DEVICES=1"}
    assert "CUDA_VISIBLE_DEVICES=1 PCI_BUS_ID" in r.stdout.splitlines()
    assert (tmp_path / "nvml.log").read_text().splitlines()[0] == "nvmlInit torch_imported=False"
    # this machine has no CUDA: the run is then refused as before (exit 2), after the GPU was chosen
    assert r.returncode == 2 and "needs an NVIDIA GPU" in r.stderr


def test_train_with_gpu_ids_on_the_busy_gpu_warns_before_the_run(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    r = cli(["train", "--preset", "modern-bf16", "--dataset", "d.jsonl", "--gpu-ids", "0"], tmp_path, code=AFTER_MAIN)
    assert r.stdout.splitlines()[:2] == [
        "info: GPU 0, as asked (--gpu-ids 0); CUDA_VISIBLE_DEVICES=0",
        "warning: GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have 79.6 GiB"]
    assert "CUDA_VISIBLE_DEVICES=0 PCI_BUS_ID" in r.stdout
    r = cli(["train", "--preset", "modern-bf16", "--dataset", "d.jsonl", "--gpu-ids", "1,x"], tmp_path)
    assert r.returncode == 2 and "'x' is not a GPU index" in r.stderr


def test_each_worker_of_a_two_gpu_run_sees_the_run_gpus_and_takes_its_own():
    plan = gpus.choose(BOX, count=2)  # GPUs 1 and 3
    envs = worker_envs(2, "29500", "{}", plan.env)
    assert [(e["CUDA_VISIBLE_DEVICES"], e["LOCAL_RANK"], e["RANK"]) for e in envs] == [("1,3", "0", "0"),
                                                                                        ("1,3", "1", "1")]
    assert all(e["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for e in envs)
    assert [gpus.nvml_index(int(e["LOCAL_RANK"]), e) for e in envs] == [1, 3]  # rank 1 runs on NVML's GPU 3
    from core import startup  # the workers' start-up began with the launcher's command, not when they were spawned

    assert [float(e[startup.ENV]) for e in envs] == [startup.started_at()] * 2


def test_the_notice_is_dropped_wherever_bitsandbytes_logs_it_and_other_warnings_stay():
    """Not only on CPUs where bitsandbytes tries the kernel: its logger, after `import core`, drops that line."""
    code = ("import logging, core; log = logging.getLogger('bitsandbytes.backends.cpu.ops'); "
            "log.warning('Failed to load CPU gemm_4bit_forward from kernels-community: %s.', 'x'); "
            "log.warning('another bitsandbytes warning')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stderr.strip() == "another bitsandbytes warning"
