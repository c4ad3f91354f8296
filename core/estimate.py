"""A VRAM estimate for preset + model + max length, before anything loads (pure Python, no torch).

Parts: quantised or plain base weights, LoRA weights with their gradients and AdamW states, activations
(with or without checkpointing), the logits over the vocabulary, and the CUDA context/allocator slack.
The per-token activation factors are calibrated against measured peaks (benchmarks/).
"""
from __future__ import annotations

from dataclasses import dataclass

from .presets import TrainConfig

GIB = 1024 ** 3


@dataclass(frozen=True)
class Arch:
    params: float  # total parameters, embeddings and LM head included
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    kv_heads: int
    heads: int


ARCHS = {
    "qwen2.5-1.5b": Arch(1.54e9, 1536, 28, 8960, 151936, 2, 12),
    "qwen2.5-0.5b": Arch(0.49e9, 896, 24, 4864, 151936, 2, 14),
    "qwen2.5-3b": Arch(3.09e9, 2048, 36, 11008, 151936, 2, 16),
    "qwen2.5-7b": Arch(7.6e9, 3584, 28, 18944, 152064, 4, 28),
    "smollm2-135m": Arch(0.135e9, 576, 30, 1536, 49152, 3, 9),
}


def arch_for(model: str) -> Arch:
    m = model.lower()
    for key, arch in ARCHS.items():
        if key.replace(".", "") in m.replace(".", "") or key in m:
            return arch
    if "1.5b" in m:
        return ARCHS["qwen2.5-1.5b"]
    return ARCHS["qwen2.5-1.5b"]


def micro_batch_tokens(config: TrainConfig) -> int:
    """Padded tokens of the largest micro-batch: rows × max length, or the token budget (one row at least)."""
    tokens = config.batch_size * config.max_length
    if config.batch_tokens > 0:
        tokens = max(min(config.batch_tokens, tokens), config.max_length)
    return tokens


@dataclass
class VramEstimate:
    total_gib: float
    parts: dict[str, float]


def lora_params(a: Arch, config: TrainConfig) -> float:
    kv = a.hidden * a.kv_heads // a.heads
    dims = {"q_proj": (a.hidden, a.hidden), "k_proj": (a.hidden, kv), "v_proj": (a.hidden, kv),
            "o_proj": (a.hidden, a.hidden), "gate_proj": (a.hidden, a.intermediate),
            "up_proj": (a.hidden, a.intermediate), "down_proj": (a.intermediate, a.hidden)}
    return a.layers * sum(config.lora_r * (i + o) for t, (i, o) in dims.items() if t in config.lora_targets)


CALIBRATION = {  # fitted on H100 peaks (benchmarks/results/h100-bench*.json), Qwen2.5-1.5B, NF4, r=64
    "per_token_factor": 0.75,  # × layers × hidden × 2 bytes kept per token with activation checkpointing
    "quadratic_gib_per_ktok2": 0.0018,  # allocator growth seen at very large micro-batches (64 × 1024 tokens)
    "workspace_gib": 0.25,  # cuBLAS workspace, CUDA graphs of the optimizer, fragmentation
}
LOGITS_CHUNK = 1024  # core.loss.CHUNK


def estimate_vram(config: TrainConfig, arch: Arch | None = None) -> VramEstimate:
    """Peak torch-allocated memory of one training step on the longest batch (batch × max length tokens), per GPU."""
    if config.gpus > 1:  # data-parallel: each GPU holds the model and its share of the batch
        from .distributed import per_device

        config = per_device(config, config.gpus)[0]
    a = arch or arch_for(config.model)
    half = config.compute_dtype in ("bfloat16", "float16")
    act_bytes = 2 if (half or config.autocast != "no") else 4
    embed = a.vocab * a.hidden  # the (tied) embedding stays unquantised
    body = a.params - embed
    if config.quantization == "nf4":
        weights = body * 0.5 * 1.07 + embed * (2 if half else 4)  # 4-bit + absmax/double-quant overhead
    else:
        weights = a.params * (2 if half else 4)
    width = 2 if config.lora_dtype == "bfloat16" else 4
    lora = lora_params(a, config) * width * 4  # weights, grads, two AdamW moments
    tokens = micro_batch_tokens(config)
    ktok = tokens / 1024
    if config.gradient_checkpointing:
        act = CALIBRATION["per_token_factor"] * tokens * a.layers * a.hidden * act_bytes
    else:
        act = tokens * a.layers * (14 * a.hidden + 3 * a.intermediate) * act_bytes
    act += CALIBRATION["quadratic_gib_per_ktok2"] * ktok ** 2 * (a.hidden / 1536) * GIB
    trained = tokens if not config.fast_loss else min(tokens, LOGITS_CHUNK)
    logits = trained * a.vocab * (act_bytes + 4 + 4)  # logits, fp32 upcast, its gradient
    parts = {"weights": weights / GIB, "lora+optimizer": lora / GIB, "activations": act / GIB,
             "logits": logits / GIB}
    if config.device == "cuda":
        parts["cuda workspace"] = CALIBRATION["workspace_gib"]
    return VramEstimate(sum(parts.values()), {k: round(v, 3) for k, v in parts.items()})
