"""A VRAM estimate for preset + model + max length, before anything loads (pure Python, no torch).

Parts: quantised or plain base weights, LoRA weights with their gradients and AdamW states, activations
(of checkpointed and of plain decoder layers), the logits over the vocabulary, and the CUDA context/allocator
slack. The per-token activation factors are calibrated against measured peaks (benchmarks/).

It also owns how many layers a run checkpoints when the setting is "auto" (`checkpoint_plan`): the fewest that
keep the estimated peak within the memory there is, less a margin.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.presets import TrainConfig, quantization_for

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


def expected_quantization(config: TrainConfig, arch: Arch | None = None, usable_gib: float | None = None) -> str:
    """nf4 or none: how a run of `config` will load its base, judged before loading from the architecture its model
    name suggests and the memory it may use, if known (core.presets.quantization_for; the run decides again from the
    model's config and the memory there is just before loading)."""
    return quantization_for(config.quantization, (arch or arch_for(config.model)).params, usable_gib,
                            weight_bytes(config))[0]


def weight_bytes(config: TrainConfig) -> int:
    """Bytes per unquantised base weight: the compute dtype's (bf16/fp16 2, fp32 4)."""
    return 2 if config.compute_dtype in ("bfloat16", "float16") else 4


def usable_gib_of(config: TrainConfig, gpus) -> float | None:
    """The memory a run may use on GPUs read as (free GiB, total GiB) pairs: the least any of them leaves, within the
    gpu_memory_fraction cap. None for no reading (quantization "auto" then takes the side that fits)."""
    usable = [min(free, config.gpu_memory_fraction * total if config.gpu_memory_fraction > 0 else total)
              for free, total in gpus]
    return min(usable) if usable else None


def usable_on(config: TrainConfig, plan) -> float | None:
    """The memory the GPUs of a run plan (a core.gpus.GpuPlan) leave the run (None: no plan or no GPU): what
    quantization "auto" decides on when the run starts (usable_gib_of). Asked by doctor and the TUI's preset tab.
    Here, not in core/gpus.py: the estimate already asks gpus how a batch splits, and gpus asking back was a circle."""
    return usable_gib_of(config, [(g.free_gib, g.total_gib) for g in plan.gpus]) if plan else None


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
    "per_token_factor": 0.75,  # × hidden × 2 bytes per token per checkpointed layer (its input, and its share of
    #                            the one layer recomputed at a time in backward)
    # × (14·hidden + 3·intermediate) × 2 bytes per token per layer that keeps its activations: fitted on an H200,
    # modern-bf16 (r=16, Liger, fused CE) at 32k-token micro-batches, rows of 128-1024 tokens: ~66 GiB peak with no
    # layer checkpointed, 7.2 GiB with all 28 (Qwen2.5-1.5B: hidden 1536, intermediate 8960). That is ~71 KB per
    # token per layer against ~2.3 KB checkpointed: each layer not recomputed costs ~2.2 GiB at 32k tokens.
    "full_layer_factor": 0.74,
    "quadratic_gib_per_ktok2": 0.0018,  # allocator growth seen at very large micro-batches (64 × 1024 tokens)
    "workspace_gib": 0.25,  # cuBLAS workspace, CUDA graphs of the optimizer, fragmentation
}
LOGITS_CHUNK = 1024  # core.train.kernels.loss.CHUNK


def estimate_vram(config: TrainConfig, arch: Arch | None = None, checkpointed: int | None = None,
                  usable_gib: float | None = None) -> VramEstimate:
    """Peak torch-allocated memory of one training step on the longest batch (batch × max length tokens), per GPU,
    with `checkpointed` decoder layers recomputed in backward (None: as the config says; "auto" counts all of them,
    the least it needs: a run takes more only where it is free). `usable_gib`: the memory the run may use, where
    known, which quantization "auto" depends on (unknown: 4-bit from 1B parameters)."""
    if config.gpus > 1:  # data-parallel: each GPU holds the model and its share of the batch
        from core.gpus import per_device

        config = per_device(config, config.gpus)[0]
    a = arch or arch_for(config.model)
    half = config.compute_dtype in ("bfloat16", "float16")
    act_bytes = 2 if (half or config.autocast != "no") else 4
    embed = a.vocab * a.hidden  # the (tied) embedding stays unquantised
    body = a.params - embed
    quantization = expected_quantization(config, a, usable_gib)
    if quantization == "nf4":
        weights = body * 0.5 * 1.07 + embed * weight_bytes(config)  # 4-bit + absmax/double-quant overhead
    else:
        weights = a.params * weight_bytes(config)
    width = 2 if config.lora_dtype == "bfloat16" else 4
    lora = lora_params(a, config) * width * 4  # weights, grads, two AdamW moments
    tokens = micro_batch_tokens(config)
    ktok = tokens / 1024
    if checkpointed is None:
        checkpointed = 0 if config.gradient_checkpointing == "none" else a.layers
    checkpointed = max(0, min(checkpointed, a.layers))
    kept = CALIBRATION["per_token_factor"] * a.hidden * act_bytes  # per token, per checkpointed layer
    full = CALIBRATION["full_layer_factor"] * (14 * a.hidden + 3 * a.intermediate) * act_bytes
    if recomputes_mlp_output(checkpointed) and fused_mlp(config, quantization):
        full -= a.intermediate * act_bytes  # SwiGLU's output, rebuilt in backward instead of kept
    act = tokens * (checkpointed * kept + (a.layers - checkpointed) * full)
    act += CALIBRATION["quadratic_gib_per_ktok2"] * ktok ** 2 * (a.hidden / 1536) * GIB
    trained = tokens if not config.fast_loss else min(tokens, LOGITS_CHUNK)
    logits = trained * a.vocab * (act_bytes + 4 + 4)  # logits, fp32 upcast, its gradient
    if config.fast_loss and config.fused_ce and config.device == "cuda":  # one chunk of 16-bit logits (its gradient
        # in place) and the input gradient: counted when a large --fused-ce-chunk needs more than the above
        logits = max(logits, min(tokens, config.fused_ce_chunk) * a.vocab * act_bytes + tokens * a.hidden * act_bytes)
    parts = {"weights": weights / GIB, "lora+optimizer": lora / GIB, "activations": act / GIB,
             "logits": logits / GIB}
    if config.device == "cuda":
        parts["cuda workspace"] = CALIBRATION["workspace_gib"]
    return VramEstimate(sum(parts.values()), {k: round(v, 3) for k, v in parts.items()})


def fused_mlp(config: TrainConfig, quantization: str) -> bool:
    """Whether a run's MLPs are one fused node (core/train/kernels/fused_blocks.py): 16-bit base, LoRA on all three."""
    return (config.fast_lora and config.fused_blocks and quantization == "none"
            and all(t in config.lora_targets for t in ("gate_proj", "up_proj", "down_proj")))


def recomputes_mlp_output(checkpointed: int) -> bool:
    """The fused MLPs' rule: SwiGLU's output (I values a token a layer) is rebuilt in backward whenever some layer
    is recomputed, i.e. memory is short; with every layer's activations kept it is kept too (one elementwise pass
    a layer saved)."""
    return checkpointed > 0


HEADROOM = 0.12  # of the usable memory, kept free: near its cap the allocator thrashes (H200 capped to 22 GiB,
#                  a no-recompute run at ~20 GiB estimated: 37.5k tokens/s; the next budget up fell to 16.2k)


@dataclass(frozen=True)
class CheckpointPlan:
    """Which decoder layers a run recomputes in backward: the lowest `layers` of `total`."""

    mode: str  # the setting: all, none or auto
    layers: int
    total: int
    peak_gib: float | None = None  # estimated peak with this plan (auto)
    without_gib: float | None = None  # ... with no layer checkpointed
    usable_gib: float | None = None  # memory this process may use in all (auto; None: unknown)

    def describe(self) -> str:
        """The run log's line: what was chosen and why."""
        which = ("none" if self.layers == 0 else "all" if self.layers == self.total else str(self.layers))
        which += f" of {self.total}" if self.layers < self.total else f" {self.total}"
        head = f"activation checkpointing: {which} layers"
        if self.mode != "auto":
            return f"{head} (gradient_checkpointing={self.mode})"
        if self.usable_gib is None:
            return f"{head} (auto, but no memory reading or no per-layer switch for this model: all recomputed)"
        why = (f"≈{self.without_gib:.1f} GiB without" + (f", ≈{self.peak_gib:.1f} GiB with" if self.layers else "")
               + f"; {self.usable_gib:.1f} GiB usable, {HEADROOM:.0%} kept free")
        if self.layers == self.total and self.peak_gib > self.usable_gib * (1 - HEADROOM):
            why += "; tight even so: an out-of-memory step splits the batch"
        return f"{head} ({why})"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "layers": self.layers, "total": self.total, "peak_gib": self.peak_gib,
                "without_gib": self.without_gib, "usable_gib": self.usable_gib}


def checkpoint_plan(config: TrainConfig, usable_gib: float | None, arch: Arch | None = None) -> CheckpointPlan:
    """How many decoder layers to checkpoint: all or none when the setting says so; for "auto" the fewest whose
    estimated peak (estimate_vram) stays within `usable_gib` less HEADROOM. The lowest layers are the ones
    recomputed: their recompute comes last in backward, when the upper layers' activations are freed already,
    so the peak is the forward's end (every other layer would recompute a layer while all others are held)."""
    a = arch or arch_for(config.model)
    mode = config.gradient_checkpointing
    if mode != "auto":
        return CheckpointPlan(mode, a.layers if mode == "all" else 0, a.layers)
    if usable_gib is None:
        return CheckpointPlan(mode, a.layers, a.layers)
    without = estimate_vram(config, a, checkpointed=0, usable_gib=usable_gib).total_gib
    budget = usable_gib * (1 - HEADROOM)
    layers = next((k for k in range(a.layers + 1)
                   if estimate_vram(config, a, checkpointed=k, usable_gib=usable_gib).total_gib <= budget), a.layers)
    peak = estimate_vram(config, a, checkpointed=layers, usable_gib=usable_gib).total_gib
    return CheckpointPlan(mode, layers, a.layers, round(peak, 2), round(without, 2), round(usable_gib, 2))


def arch_of(model_config) -> Arch:
    """The estimate's view of a loaded model (its transformers config): what a run plans with."""
    h = model_config.hidden_size
    heads = getattr(model_config, "num_attention_heads", 1) or 1
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    layers, inter, vocab = model_config.num_hidden_layers, model_config.intermediate_size, model_config.vocab_size
    kv = h * kv_heads // heads
    body = layers * (2 * h * h + 2 * h * kv + 3 * h * inter)
    head = 0 if getattr(model_config, "tie_word_embeddings", True) else vocab * h
    return Arch(float(body + vocab * h + head), h, layers, inter, vocab, kv_heads, heads)
