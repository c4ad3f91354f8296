"""`bench`: tokens/s, ms/step, peak VRAM and MFU of the presets against the old script's settings.

Random weights of a real architecture (compute and memory do not depend on weight values), synthetic token rows
of uniform length in [min_len, max_len], every token trained (the worst case for answer-only logits). Each
configuration goes through the same engine path as a real run (model_setup.build_trainer), offline.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from core.errors import InputError
from core.presets import TrainConfig, config_for

ARCH_CONFIGS = {
    "qwen2.5-1.5b": dict(kind="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6),
    "tiny": dict(kind="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                 tie_word_embeddings=True),
}


def old_settings() -> TrainConfig:
    """The old train.py: NF4, fp32 compute, fp32 model, batch 4, paged AdamW 32-bit, dropout 0.1, HF full loss."""
    return replace(config_for("t4-fp32"), preset="old-settings", lora_r=64, lora_alpha=16, lora_dropout=0.1,
                   kbit_prepare=True, fast_loss=False, gradient_checkpointing="all", fast_lora=False, liger=False,
                   batch_tokens=0, mask_padding=True, lora_dtype="float32", pad_to_multiple=0)


def build_arch(name: str, folder: Path, dtype: str = "bfloat16") -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    spec = dict(ARCH_CONFIGS[name])
    kind = spec.pop("kind")
    cfg = (Qwen2Config if kind == "qwen2" else LlamaConfig)(**spec)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = (Qwen2ForCausalLM if kind == "qwen2" else LlamaForCausalLM)(cfg).to(getattr(torch, dtype))
    model.save_pretrained(str(folder))
    del model
    return folder


def synthetic_rows(n: int, vocab: int, min_len: int, max_len: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    ids = [[rng.randrange(3, vocab) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]
    return {"input_ids": ids, "labels": [list(r) for r in ids]}


def _id_tokenizer():
    """Rows are token ids already; the trainer only needs a tokenizer object with pad/eos ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def measure(config: TrainConfig, model_dir: Path, *, steps: int, min_len: int, max_len: int, vocab: int,
            peak_tflops: float | None) -> dict:
    from datasets import Dataset

    rows = synthetic_rows(steps * config.effective_batch + 8, vocab, min_len, max_len)
    ds = Dataset.from_dict(rows)
    with tempfile.TemporaryDirectory(prefix="bench-") as work:  # the trainer's output: gone with the measurement
        return _measure(config, model_dir, ds, Path(work), steps=steps, peak_tflops=peak_tflops)


def _measure(config: TrainConfig, model_dir: Path, ds, work: Path, *, steps: int, peak_tflops: float | None) -> dict:
    import torch

    from core.runs.output import RunDirs
    from core.train.checkpointing import decoder_layers
    from core.train.model_setup import build_trainer, load_model_from_path, plan_checkpointing, resolve_quantization
    from core.train.profiling import profile_steps

    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    config = resolve_quantization(config, model_dir, lambda e: None)
    model = load_model_from_path(config, model_dir, lambda e: None)
    n_params = _dense_params(model_dir)
    dirs = RunDirs(work / "out", work, None)
    times: list[float] = []
    tokens: list[int] = []

    cfg = replace(config, max_steps=steps, eval_fraction=0.0, save_every=0)
    plan = plan_checkpointing(cfg, model, lambda e: None)  # as a run decides it: from the memory left after loading
    trainer, callback = build_trainer(cfg, model, _id_tokenizer(), ds, None, dirs, lambda e: None, threading.Event(), {
        "config": cfg.to_dict(), "train_rows": len(ds), "eval_rows": 0, "device": cfg.device,
        "output_dir": str(work)})
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)
            ga, i = cfg.grad_accum, len(times) - 1
            tokens.append(sum(callback.counter.history[i * ga:(i + 1) * ga]))

    trainer.add_callback(Timer())
    profile_steps(trainer, config.preset)
    trainer.train()
    losses = [json.loads(l)["loss"] for l in dirs.metrics.read_text().splitlines() if '"event": "step"' in l]
    skip = min(8, len(times) // 3)
    steady_t, steady_n = times[skip:], tokens[skip:]
    # The median of per-step rates: a step that JIT-compiles a Triton kernel for a new shape (Liger, first use in
    # a process; cached on disk afterwards) must not decide the number. Beside it, what a run gets: all the real
    # tokens of the steady steps ÷ their time (a slow step counts as long as it took).
    tok_s = statistics.median(n / t for n, t in zip(steady_n, steady_t))
    # Model FLOPs: forward and input gradients of a frozen base, 4·N per token. Hardware FLOPs add the recompute
    # of the checkpointed layers' forward, up to 2·N more.
    flops_per_token = (4 + 2 * plan.layers / max(plan.total, 1)) * n_params
    result = {
        "preset": config.preset,
        "tokens_per_s": round(tok_s, 1),
        "tokens_per_s_total": round(sum(steady_n) / sum(steady_t), 1),
        "tokens_total": sum(steady_n),  # real (non-padding) tokens of the steps after the first `skip`
        "seconds_total": round(sum(steady_t), 3),
        "skipped_steps": skip,
        "ms_per_step": round(1000 * statistics.median(steady_t), 1),
        "tokens_per_step": round(statistics.mean(steady_n), 1),
        "step_ms": [round(1000 * t, 1) for t in times],
        "step_tokens": tokens,
        "peak_vram_gib": None,
        "reserved_vram_gib": None,
        "nvml_used_gib": None,
        "mfu": round(tok_s * flops_per_token / (peak_tflops * 1e12), 4) if peak_tflops else None,  # hardware
        "mfu_model": round(tok_s * 4 * n_params / (peak_tflops * 1e12), 4) if peak_tflops else None,
        "checkpointing": {**plan.to_dict(), "said": plan.describe(),  # (an out-of-memory step recomputes all)
                          "layers_at_end": sum(1 for b in decoder_layers(model) if b.gradient_checkpointing)},
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "steps": len(times),
        "config": {k: v for k, v in cfg.to_dict().items()
                   if k in ("batch_size", "grad_accum", "compute_dtype", "autocast", "optimizer", "max_length",
                            "gradient_checkpointing", "padding_free", "lora_r", "lora_dropout", "quantization",
                            "batch_tokens", "mask_padding", "lora_dtype", "pad_to_multiple", "fast_lora", "liger",
                            "cudnn_attention", "fused_lora_grad", "fused_blocks")},
    }
    if torch.cuda.is_available():
        from core.gpus import nvml_index
        from core.hardware import nvml_used_gib

        result["peak_vram_gib"] = round(torch.cuda.max_memory_allocated() / 1024 ** 3, 3)
        result["reserved_vram_gib"] = round(torch.cuda.max_memory_reserved() / 1024 ** 3, 3)
        result["nvml_used_gib"] = round(nvml_used_gib(nvml_index(0))[0] or 0, 3)
    del trainer, model
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _dense_params(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "config.json").read_text())
    h, i, L, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = h * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i
    return L * per_layer + v * h  # the LM head counts once (tied with the embedding)


def matmul_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    return 10 * 2 * 8192 ** 3 / (time.perf_counter() - t) / 1e12


def parse_overrides(text: str) -> dict:
    """Overrides such as batch_tokens=32768+mask_padding=false+lora_targets=q_proj,v_proj, each read by its
    setting (core.presets.Setting.parse, as the flags are); an unknown name or a value that does not fit its type
    is an InputError naming it."""
    from core.presets import SETTINGS

    out = {}
    for item in text.split("+"):
        key, _, value = (part.strip() for part in item.partition("="))
        if key not in SETTINGS:
            raise InputError(f"unknown setting {key!r} in the bench override {item!r}",
                             hint="`genaptitude-trainer train --help` lists the settings")
        try:
            out[key] = SETTINGS[key].parse(value)
        except ValueError as exc:
            raise InputError(f"bench override {item!r}: {key} {exc}") from None
    return out


def run_bench(presets: list[str], *, arch: str, steps: int, min_len: int, max_len: int, smoke: bool,
              overrides: dict | None = None, emit=print) -> dict:
    from core.libraries import quiet_libraries

    quiet_libraries()
    if smoke:
        arch, steps, min_len, max_len = "tiny", min(steps, 4), 16, 64
    # The random-weight model (~3 GB for qwen2.5-1.5b) lives as long as this call, not in the temp folder forever.
    with tempfile.TemporaryDirectory(prefix=f"arch-{arch}-") as folder:
        return _run_presets(presets, Path(folder), arch=arch, steps=steps, min_len=min_len, max_len=max_len,
                            smoke=smoke, overrides=overrides, emit=emit)


def _run_presets(presets: list[str], folder: Path, *, arch: str, steps: int, min_len: int, max_len: int,
                 smoke: bool, overrides: dict | None, emit) -> dict:
    import torch

    from core.libraries import versions

    build_arch(arch, folder, "bfloat16" if torch.cuda.is_available() else "float32")
    vocab = ARCH_CONFIGS[arch]["vocab_size"]
    peak = matmul_tflops()
    results = []
    for spec in presets:
        name, _, extra = spec.partition(":")  # e.g. "modern-bf16:batch_size=32+lora_dtype=bfloat16"
        cfg = old_settings() if name == "old-settings" else config_for(name)
        if extra:
            cfg = replace(cfg, **parse_overrides(extra))
        if smoke:
            cfg = replace(cfg, device="cpu", quantization="none", compute_dtype="float32", autocast="no",
                          optimizer="adamw_torch", batch_size=2, grad_accum=1, padding_free=False)
        cfg = replace(cfg, model=str(folder), max_length=max(max_len, 16), preset=spec, **(overrides or {}))
        try:
            r = measure(cfg, folder, steps=steps, min_len=min_len, max_len=max_len, vocab=vocab, peak_tflops=peak)
        except Exception as exc:  # noqa: BLE001 - one failing configuration must not lose the others' numbers
            traceback.print_exc()  # its row says what failed; the trace says where
            r = {"preset": spec, "error": f"{type(exc).__name__}: {exc}"}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        emit(json.dumps(r))
        results.append(r)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"gpu": gpu, "arch": arch, "steps": steps, "seq_len": [min_len, max_len],
            "matmul_bf16_tflops": round(peak, 1) if peak else None, "versions": versions(), "results": results}
