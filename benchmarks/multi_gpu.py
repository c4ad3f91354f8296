"""Data-parallel scaling of `genaptitude-trainer train --gpus N` (issue: 2 GPUs ≥ 1.8×, 4 GPUs ≥ 3.4× one GPU).

    python benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export20k.jsonl --gpus 1,2,4 \
        [--gpu-batch split,each] [--steps 30] [--train-args "--quantization none"] > benchmarks/results/multi-gpu.json

Each configuration is a real `train` run (4-bit model, the preset's batching, DDP over NCCL) on the same export;
tokens/s is the median of the run's logged rates (all GPUs' real tokens) after step 8, from its metrics.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """This checkout first on the path, then the caller's PYTHONPATH (wheels installed into a --target folder)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def run(model: str, dataset: str, preset: str, gpus: int, gpu_batch: str, steps: int, extra: str = "") -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"mg-{gpus}-{gpu_batch}-")) / "adapter"
    cmd = [sys.executable, "-m", "core", "train", "--model", model, "--dataset", dataset, "--preset", preset,
           "--max-steps", str(steps), "--gpus", str(gpus), "--gpu-batch", gpu_batch, "--eval-fraction", "0.01",
           "--output", str(out), "--json", *shlex.split(extra)]
    r, held = run_sampled(cmd)
    if r.returncode != 0:
        return {"gpus": gpus, "gpu_batch": gpu_batch, "error": r.stderr[-2000:]}
    steps_logged = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"event": "step"' in l]
    memory = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"event": "memory"' in l]
    start = next(json.loads(l) for l in r.stdout.splitlines() if '"event": "run_started"' in l)
    return {"gpus": gpus, "gpu_batch": gpu_batch, "train_args": extra,
            "tokens_per_s": round(statistics.median(s["tokens_per_s"] for s in steps_logged[8:]), 1),
            "per_gpu_batch_tokens": start["config"]["batch_tokens"], "grad_accum": start["config"]["grad_accum"],
            "peak_vram_gib": max((m["torch_peak_gib"] or 0) for m in memory) if memory else None,
            "gpus_used_gib": memory[-1].get("gpus_used_gib") if memory else None,
            "startup": json.loads((out / "run.json").read_text()).get("startup"),  # to training, to the first step
            "processes_max_mib": held}


def run_sampled(cmd: list[str]) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run `cmd`, reading every 2 s which processes hold how much memory on which GPU (nvidia-smi): each
    (process, GPU)'s most, to tell a rank that holds or computes more than the others from another process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=child_env())
        most: dict[tuple[str, str], int] = {}
        while proc.poll() is None:
            for pid, gpu, mib in gpu_processes():
                most[(pid, gpu)] = max(most.get((pid, gpu), 0), mib)
            time.sleep(2)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    return done, [{"pid": pid, "gpu": gpu, "max_mib": mib} for (pid, gpu), mib in sorted(most.items())]


def gpu_processes() -> list[tuple[str, str, int]]:
    """(pid, GPU index, MiB) of every compute process nvidia-smi lists now ([] without nvidia-smi)."""
    def query(args: list[str]) -> list[list[str]]:
        try:
            text = subprocess.run(["nvidia-smi", *args, "--format=csv,noheader,nounits"], capture_output=True,
                                  text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]

    index = {uuid: i for i, uuid in query(["--query-gpu=index,uuid"]) if uuid}
    return [(pid, index.get(uuid, uuid), int(mib)) for pid, uuid, mib in
            query(["--query-compute-apps=pid,gpu_uuid,used_memory"]) if mib.isdigit()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--preset", default="modern-bf16")
    ap.add_argument("--gpus", default="1,2,4")
    ap.add_argument("--gpu-batch", default="split,each")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--train-args", default="", help="more `train` flags for every run, e.g. \"--quantization none\"")
    a = ap.parse_args()
    import torch

    results = []
    for gpu_batch in a.gpu_batch.split(","):
        for n in (int(x) for x in a.gpus.split(",")):
            if n > torch.cuda.device_count() or (n == 1 and results and gpu_batch != a.gpu_batch.split(",")[0]):
                continue
            r = run(a.model, a.dataset, a.preset, n, gpu_batch, a.steps, a.train_args)
            print(json.dumps(r), file=sys.stderr, flush=True)
            results.append(r)
    one = next((r["tokens_per_s"] for r in results if r["gpus"] == 1 and "tokens_per_s" in r), None)
    for r in results:
        if one and "tokens_per_s" in r:
            r["vs_one_gpu"] = round(r["tokens_per_s"] / one, 3)
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "gpus_available": torch.cuda.device_count(),
                      "preset": a.preset, "train_args": a.train_args, "steps": a.steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
