"""CPU time a call of RMSNorm (Liger's, torch's fused) and of the fused linear cross-entropy (Liger's, ours at
`fused_ce_chunk` 1024 and 4096) costs, forward and backward, on one GPU (nvidia-h200):

    python benchmarks/cpu_cost.py            # all of it
    python benchmarks/cpu_cost.py --nvml     # only a memory reading through NVML: one GPU's, and every GPU's

The GPU is held by a long sleep kernel while the calls are queued, so the time measured is the CPU's alone (what
decides a step that the CPU, not the GPU, is late for); then the GPU time per call, queued back to back.
"""
from __future__ import annotations

import json
import time

import torch


def cpu_and_gpu_us(fn, n: int = 50) -> dict:
    fn()
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # ~1 s of GPU: nothing queued below runs before the CPU is done
    t = time.perf_counter()
    for _ in range(n):
        fn()
    cpu = (time.perf_counter() - t) / n
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return {"cpu_us": round(cpu * 1e6, 1), "gpu_us": round(start.elapsed_time(end) * 1e3 / n, 1)}


def nvml_us(n: int = 200) -> dict:
    """A run's memory reading at each logged step: core.hardware.nvml_used_gib now, sample() (every GPU's name,
    load, temperature and memory) as it read before."""
    from core import hardware

    out = {"gpus_nvml_sees": len(hardware.sample())}
    for name, fn in (("nvml_used_gib", lambda: hardware.nvml_used_gib(0)), ("sample_all_gpus", hardware.sample)):
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out[f"{name}_us"] = round((time.perf_counter() - t) / n * 1e6, 1)
    return out


def main() -> None:
    import sys

    if "--nvml" in sys.argv:
        print(json.dumps(nvml_us()))
        return
    from liger_kernel.transformers.rms_norm import LigerRMSNorm

    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    from core.train.kernels.cross_entropy import linear_cross_entropy

    out = {"torch": torch.__version__}
    x0 = torch.randn(8, 2048, 1536, device="cuda", dtype=torch.bfloat16)
    w = torch.ones(1536, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn_like(x0)
    liger = LigerRMSNorm(1536, eps=1e-6).to("cuda", torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out["torch_rms_norm_dtype_under_autocast"] = str(torch.rms_norm(x0, (1536,), w, 1e-6).dtype)

    def fb(f):
        def run():
            x = x0.detach().requires_grad_(True)
            f(x).backward(g)
        return run

    out["liger_rms_norm_fwd_bwd"] = cpu_and_gpu_us(fb(liger))
    out["torch_rms_norm_fwd_bwd"] = cpu_and_gpu_us(fb(lambda x: torch.rms_norm(x, (1536,), w, 1e-6)))
    head = torch.nn.Linear(1536, 151_936, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
    for tokens in (16384, 32768):
        h0 = torch.randn(tokens, 1536, device="cuda", dtype=torch.bfloat16)
        y = torch.randint(0, 151_936, (tokens,), device="cuda")
        liger_loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
        for name, loss in (("liger", lambda h: liger_loss(head.weight, h, y)),
                           ("ours_1024", lambda h: linear_cross_entropy(h, head.weight, y, 1024)),
                           ("ours_4096", lambda h: linear_cross_entropy(h, head.weight, y, 4096))):
            def ce():
                loss(h0.detach().requires_grad_(True)).backward()
            torch.cuda.reset_peak_memory_stats()
            out[f"fused_ce_{tokens}_{name}"] = {**cpu_and_gpu_us(ce, n=10),
                                                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        del h0, y
    out["nvml"] = nvml_us()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
