"""Training configuration (TrainConfig, every setting defined once) and the hardware presets built from it.

No torch here: the TUI imports this on start-up to list presets (core/suggest.py picks one for the hardware).

To add a setting, add one field to TrainConfig with `setting(default, help, group=...)`: `help` says what it does
and why (it becomes the `train --field-name` flag's help and the TUI's help line), `group` is the `train --help`
section, `choices=` a fixed set of values (checked by the flag and by `validate`), `label=` shows it in the TUI's
preset panel (in field order), `flag=` spells the flag when `--field-name` will not do, `bare=`/`off=` give the
values of the flag alone and of its `--no-` form (a choice that used to be a switch). The flag, its parsing, the
JSON round trip (run.json, the TUI's run process) and the TUI field all come from that one field (`SETTINGS`); a
check on its value goes in `validate` with `field=` naming it, and a preset that sets it does so in
core/preset_table.py with the reason beside the value. tests/test_settings.py fails for a field without help.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.data.layout import BEFORE_THE_SETTING, INSTRUCTION_TURNS
from core.errors import InputError, Problem
from core.preset_table import ALL_PROJECTIONS, BUNDLED_MODEL, DEFAULT_GPU_MODEL, TABLE

__all__ = ["ALL_PROJECTIONS", "BUNDLED_MODEL", "DEFAULT_GPU_MODEL", "PRESETS", "SETTINGS", "Preset", "Setting",
           "TrainConfig", "auto_lr", "batch_description", "batch_label", "config_changes", "config_for",
           "config_from_dict", "get_preset", "quantization_for"]

MODEL, LENGTH, OPTIM, LORA, SPEED, GPUS, RUN = ("model and precision", "rows and batches", "optimizer", "LoRA",
                                                "speed: kernels and memory", "GPUs", "checkpoints, checks, logs")


def setting(default: Any, help: str, *, group: str, choices: tuple[str, ...] | None = None,
            label: str | None = None, flag: str | None = None, bare: str | None = None,
            off: str | None = None) -> Any:
    """A TrainConfig field with what its flag and the TUI say about it (the module docstring says how). `bare`:
    the value of the flag given alone; `off`: the value of its --no- form (a choice field that was a switch)."""
    return field(default=default, metadata={"help": help, "group": group, "choices": choices, "label": label,
                                            "flag": flag, "bare": bare, "off": off})


CHECKPOINT_MODES = ("all", "none", "auto")


def checkpoint_mode(value: Any) -> Any:
    """A gradient_checkpointing value as all/none/auto (run.json files before "auto" hold true/false); anything
    else unchanged, for validate() to name."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on", "all"):
        return "all"
    if text in ("false", "0", "no", "off", "none"):
        return "none"
    return text if text == "auto" else value


@dataclass
class TrainConfig:
    """Everything a run needs besides the dataset path. Every field can be overridden from the CLI/TUI."""

    preset: str = setting("cpu", "the hardware preset the other values start from (default: the one `doctor` "
                                 "suggests)", group=MODEL)
    model: str = setting(BUNDLED_MODEL, "Hub id, local folder, .gguf file or smollm2-135m-instruct",
                         group=MODEL, label="model")
    device: str = setting("cpu", "where the run computes (a preset sets it: --preset cpu for no GPU)", group=MODEL,
                          choices=("cuda", "cpu"))
    quantization: str = setting("none", "the base model's weights: nf4 (bitsandbytes 4-bit), none, or auto (nf4 for "
                                        "a base of 1B parameters or more, none below)", group=MODEL,
                                choices=("nf4", "none", "auto"))
    compute_dtype: str = setting("float32", "dtype the 4-bit layers compute in, and the base weights' dtype",
                                 group=MODEL, choices=("float32", "float16", "bfloat16"))
    autocast: str = setting("no", "mixed precision: no, fp16 (with a grad scaler) or bf16", group=MODEL,
                            choices=("no", "fp16", "bf16"))
    cpu_bf16: bool = setting(False, "on a CPU with AMX bf16 units (Xeon 4th generation and newer): base weights in "
                                    "bf16 and bf16 autocast, LoRA weights in fp32; fp32 on other CPUs",
                             group=MODEL)
    trust_remote_code: bool = setting(False, "allow the model's own Python code to run", group=MODEL)
    epochs: float = setting(1.0, "passes over the training rows", group=LENGTH, label="epochs")
    max_steps: int = setting(-1, "optimizer steps to run; > 0 overrides --epochs", group=LENGTH, label="max steps")
    batch_size: int = setting(4, "rows per micro-batch (with --batch-tokens: the most rows a micro-batch may hold)",
                              group=LENGTH, label="batch size")
    batch_tokens: int = setting(0, "micro-batches of length-sorted rows up to N padded tokens (0: a fixed "
                                   "--batch-size rows)", group=LENGTH)
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer step", group=LENGTH, label="grad accum")
    lr: float = setting(2e-4, "learning rate; 0 = auto: from the model's width and family (auto_lr)", group=OPTIM,
                        label="learning rate")
    max_length: int = setting(1024, "tokens per row; longer rows are handled as --truncation says", group=LENGTH,
                              label="max length")
    truncation: str = setting("keep-answer", "rows over --max-length: keep-answer cuts the input in its middle and "
                              "keeps the answer whole (GenAptitude puts whole JSON documents in `input` and the "
                              "answer last: right-truncation would train those rows on no answer); right cuts the end "
                              "(the answer goes first); drop leaves them out", group=LENGTH,
                              choices=("keep-answer", "right", "drop"), label="truncation")
    instruction_turn: str = setting("system", "where an instruction/input row's instruction goes: system puts it in the "
                                    "system turn and the input in the user turn, as RAISE (GenAptitude) prompts "
                                    "the model, so the adapter learns the prompt it will be asked; user joins "
                                    "instruction and input in the user turn (the layout before this setting). A row's "
                                    "own `system` field wins; a template without a system role gets user "
                                    "(core/data/layout.py)", group=LENGTH, choices=INSTRUCTION_TURNS,
                                    label="instruction")
    group_by_length: bool = setting(False, "batch rows of similar length together: less padding", group=LENGTH)
    min_updates: int = setting(100, "shrink a small export's batches (token budget, then accumulation) until the run "
                                    "makes this many optimizer steps (0: keep the preset's batches)", group=LENGTH)
    lr_scheduler: str = setting("constant", "transformers' scheduler name: constant, linear, cosine...",
                                group=OPTIM)
    warmup_steps: int = setting(0, "optimizer steps of linear warm-up", group=OPTIM)
    weight_decay: float = setting(0.0, "AdamW's weight decay on the LoRA weights", group=OPTIM)
    max_grad_norm: float = setting(1.0, "clip the gradient norm to this", group=OPTIM)
    optimizer: str = setting("adamw_torch", "transformers' optimizer name: adamw_torch, adamw_torch_fused, "
                                            "paged_adamw_32bit...", group=OPTIM)
    seed: int = setting(42, "seed of the held-out split, the shuffling and the LoRA initialisation", group=OPTIM)
    lora_r: int = setting(16, "LoRA rank: the adapter's width per projection", group=LORA, label="LoRA r")
    lora_alpha: int = setting(32, "LoRA alpha (the update is scaled by alpha / r)", group=LORA)
    lora_dropout: float = setting(0.0, "dropout on the LoRA input", group=LORA)
    lora_targets: tuple[str, ...] = setting(ALL_PROJECTIONS, "comma-separated module names, e.g. q_proj,v_proj",
                                            group=LORA)
    lora_dtype: str = setting("float32", "LoRA weights (and AdamW's master copy): float32, or bfloat16 on bf16 "
                                         "presets", group=LORA, choices=("float32", "bfloat16"))
    lora_top_fraction: float = setting(1.0, "adapt only the top fraction of layers; backward stops at the lowest "
                                            "one", group=LORA)
    kbit_prepare: bool = setting(False, "peft.prepare_model_for_kbit_training (fp32 upcast), as the old script did",
                                 group=LORA)
    fast_lora: bool = setting(True, "LoRA update added inside one addmm (core/train/kernels/fast_lora.py) instead "
                                    "of PEFT's copy+mul+add", group=SPEED)
    fused_lora_grad: bool = setting(False, "with fast_lora, each LoRA projection is one node in backward too: its "
                                           "input gradient is accumulated into the base layer's (addmm_), not added "
                                           "as a tensor of its own", group=SPEED)
    fused_blocks: bool = setting(False, "with fast_lora, q/k/v of each attention and gate/up/SwiGLU/down of each MLP "
                                        "are one node each over one base weight (16-bit bases; "
                                        "core/train/kernels/fused_blocks.py)", group=SPEED)
    liger: bool = setting(False, "Liger's fused Triton kernels for RMSNorm and SwiGLU (CUDA; needs liger-kernel)",
                          group=SPEED)
    fused_ce: bool = setting(False, "fused linear cross-entropy for the answer-only loss: each chunk's gradient "
                                    "made in the forward pass, no fp32 logits (CUDA, Triton)", group=SPEED)
    fused_ce_chunk: int = setting(256, "with fused_ce, the most tokens a chunk of logits holds (its bf16 logits: "
                                       "vocabulary × this × 2 bytes: 78 MB at 256 on Qwen2.5, the chunk Liger's "
                                       "loss made at 16k tokens, with which 8gb's peak was measured)", group=SPEED)
    torch_rms_norm: bool = setting(False, "RMSNorm through torch's fused kernel (torch >= 2.8, CUDA) instead of "
                                          "Liger's: the same one kernel for far less CPU a call", group=SPEED)
    fused_rope: bool = setting(False, "RoPE on q and k in one Triton kernel each way (CUDA) instead of transformers' "
                                      "~30 elementwise kernels a layer", group=SPEED)
    fast_loss: bool = setting(True, "LM head only where the loss is (answer tokens), in chunks; off: the library's "
                                    "loss", group=SPEED)
    pad_to_multiple: int = setting(0, "pad each batch's length up to a multiple of this (fewer distinct kernel "
                                      "shapes; 0: off)", group=SPEED)
    mask_padding: bool = setting(True, "off: right-padded rows run without an attention mask (causal attention never "
                                       "lets a real token see the padding after it), so SDPA can take its flash "
                                       "kernel", group=SPEED)
    cudnn_attention: bool = setting(True, "off: SDPA may not pick cuDNN's kernel (it plans anew for each batch "
                                          "shape)", group=SPEED)
    padding_free: bool = setting(False, "concatenate a batch into one row (no padding tokens); needs flash/sdpa "
                                        "varlen", group=SPEED)
    gradient_checkpointing: str = setting("none", "recompute decoder layers' activations in backward: all (least "
                                               "memory, ~1/3 more compute), none, or auto (as few layers as the "
                                               "GPU's free memory needs: core.estimate.checkpoint_plan); the flag "
                                               "alone means all", group=SPEED, choices=CHECKPOINT_MODES,
                                          bare="all", off="none")
    gpu_memory_fraction: float = setting(0.0, "cap this process's share of GPU memory (0-1; 0: no cap), e.g. on a "
                                              "shared card", group=SPEED)
    gpus: int = setting(1, "data-parallel on N GPUs (or all), one process each (core/train/distributed.py); the effective "
                           "batch stays the preset's. Default 1: the GPU with the most free memory", group=GPUS,
                        label="GPUs")
    gpu_ids: tuple[int, ...] = setting((), "use exactly these GPUs, e.g. 1 or 1,3 (indices as nvidia-smi shows "
                                           "them); default: the freest (core/gpus.py decides, before CUDA starts). "
                                           "A CUDA_VISIBLE_DEVICES you set limits the choice", group=GPUS)
    gpu_batch: str = setting("split", "with --gpus: split keeps the effective batch (each GPU takes a share), each "
                                      "keeps every GPU's micro-batch (effective batch × GPUs, faster per token)",
                             group=GPUS, choices=("split", "each"))
    save_every: int = setting(0, "steps between resumable checkpoints (0: at the end/stop only)", group=RUN)
    save_every_minutes: float = setting(15.0, "minutes of training between resumable checkpoints (0: off): a run "
                                              "killed by a reboot or the OOM killer loses at most this much. GPU "
                                              "presets: 15 (a LoRA checkpoint is a few MB plus optimizer state, "
                                              "seconds to write: a save per quarter hour costs well under 1% of the "
                                              "run)", group=RUN)
    eval_fraction: float = setting(0.05, "share of the rows held out for eval loss and the after-run check",
                                   group=RUN)
    eval_every: int = setting(0, "steps between eval-loss measurements (0: at the end of each epoch)", group=RUN)
    logging_steps: int = setting(1, "steps between loss lines (and metrics.jsonl rows)", group=RUN)
    score_rows: int = setting(16, "held-out rows answered by base and adapter after the run, to tell whether it "
                                  "learned (0: skip the check)", group=RUN)
    score_seconds: float = setting(60.0, "time limit of that after-run check (the rows answered by then are "
                                         "scored)", group=RUN)
    tensorboard: bool = setting(False, "also write TensorBoard logs (checkpoints/runs)", group=RUN)

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
        """Collect every problem with the values and raise once (before any model loads); each names its field."""
        p: list[Problem] = []

        def need(ok: bool, field: str, message: str, fix: str) -> None:
            if not ok:
                p.append(Problem(message, fix, field=field))

        for s in SETTINGS.values():
            value = getattr(self, s.name)
            if s.choices and s.name != "preset":  # bench's old-settings is a preset name of its own
                need(value in s.choices, s.name, f"{s.words} must be {_either(s.choices)}, not {value!r}",
                     f"{s.flag}: {s.help}")
        need(self.gpus >= 1, "gpus", f"gpus must be at least 1, not {self.gpus}",
             "use --gpus 1 (or leave it out) for one GPU")
        mismatch = gpu_ids_mismatch(self.gpus, self.gpu_ids)
        need(not mismatch, "gpus", mismatch, GPU_IDS_FIX)
        need(self.epochs > 0 or self.max_steps > 0, "epochs", "nothing to train: epochs and max steps are both 0",
             "give --epochs 1 or --max-steps N")
        need(self.batch_size >= 1, "batch_size", f"batch size must be ≥ 1 (got {self.batch_size})",
             "use --batch-size 1 or more")
        need(self.batch_tokens == 0 or self.batch_tokens >= 256, "batch_tokens",
             f"batch tokens must be 0 (off) or ≥ 256 (got {self.batch_tokens})", "e.g. --batch-tokens 16384")
        need(self.pad_to_multiple >= 0, "pad_to_multiple", "pad multiple must be ≥ 0", "use 0 (off) or 64")
        need(self.fused_ce_chunk >= 1, "fused_ce_chunk",
             f"fused cross-entropy chunk must be ≥ 1 token (got {self.fused_ce_chunk})", "e.g. --fused-ce-chunk 1024")
        need(self.grad_accum >= 1, "grad_accum", f"gradient accumulation must be ≥ 1 (got {self.grad_accum})",
             "use --grad-accum 1 or more")
        need(0 <= self.lr < 1, "lr", f"learning rate {self.lr} is out of range",
             "typical LoRA values are 1e-4 to 2e-3; 0 picks one from the model's size")
        need(16 <= self.max_length <= 131072, "max_length", f"max length {self.max_length} is out of range",
             "use 256–4096")
        need(self.lora_r >= 1, "lora_r", f"LoRA r must be ≥ 1 (got {self.lora_r})", "try 8, 16 or 64")
        need(self.lora_alpha >= 1, "lora_alpha", f"LoRA alpha must be ≥ 1 (got {self.lora_alpha})",
             "alpha = 2·r is a common choice")
        need(0 <= self.lora_dropout < 1, "lora_dropout", f"LoRA dropout must be in [0, 1) (got {self.lora_dropout})",
             "use 0 or 0.05")
        need(0 < self.lora_top_fraction <= 1, "lora_top_fraction",
             f"LoRA top fraction must be in (0, 1] (got {self.lora_top_fraction})",
             "use 1 for all layers, 0.5 for the top half")
        need(len(self.lora_targets) > 0, "lora_targets", "no LoRA target modules", "e.g. --lora-targets q_proj,v_proj")
        need(0 <= self.eval_fraction < 0.5, "eval_fraction", f"eval fraction {self.eval_fraction} is out of range",
             "use 0 to 0.2")
        need(0 <= self.gpu_memory_fraction <= 1, "gpu_memory_fraction", "GPU memory fraction must be in [0, 1]",
             "e.g. 0.5 for half the card")
        need(self.save_every >= 0, "save_every", "save interval must be ≥ 0", "0 saves only at the end")
        need(self.min_updates >= 0, "min_updates", f"min updates must be ≥ 0 (got {self.min_updates})",
             "e.g. 100; 0 keeps the budget")
        need(self.score_rows >= 0 and self.score_seconds >= 0, "score_rows",
             "the after-run check needs rows and seconds ≥ 0", "use --score-rows 0 to skip it")
        need(self.save_every_minutes >= 0, "save_every_minutes", "save interval in minutes must be ≥ 0",
             "0 turns timed checkpoints off")
        if self.device == "cpu":
            need(self.autocast != "fp16", "autocast", "fp16 autocast needs a GPU",
                 "use --autocast no (fp32), or bf16 on a CPU with AMX units (--cpu-bf16 picks it where they are)")
            need(self.compute_dtype != "float16", "compute_dtype", "float16 compute is not supported on CPU",
                 "use float32 on CPU")
        if self.autocast == "fp16":
            need(self.compute_dtype != "bfloat16", "compute_dtype", "fp16 autocast with bfloat16 compute mixes two "
                 "half types", "use compute float16 with fp16 autocast")
        if p:
            raise InputError(f"{len(p)} problem(s) with the training settings", problems=p)


def gpu_count(gpus: int | None, gpu_ids: tuple[int, ...]) -> int | None:
    """How many GPUs a run uses, the one rule every reader of the flags and the TUI's GPU list asks: the ids given
    set it (their number) unless a count is given too, which must then agree (gpu_ids_mismatch). None: neither was
    given (the preset's or the config's value stays)."""
    return len(gpu_ids) if gpu_ids and gpus is None else gpus


def gpu_ids_mismatch(gpus: int, gpu_ids: tuple[int, ...]) -> str:
    """The problem when a count and ids of GPUs disagree ('' when they agree or no ids are given)."""
    return f"gpus is {gpus} but gpu ids name {len(gpu_ids)} GPU(s)" if gpu_ids and len(gpu_ids) != gpus else ""


GPU_IDS_FIX = "give --gpu-ids alone: it sets the number of GPUs"


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as the CLI and the TUI see it (from its metadata; see the module docstring)."""

    name: str
    help: str
    group: str
    kind: type  # bool, int, float, str, or tuple (a comma-separated list of `item`)
    item: type  # a tuple's element type
    default: Any
    choices: tuple[str, ...] | None
    label: str | None  # the TUI's preset panel shows the field under this label (None: CLI only)
    flag: str  # "--batch-size"
    bare: str | None = None  # the value of the flag given alone (a choice field that was a switch)
    off: str | None = None  # the value of its --no- form

    @property
    def words(self) -> str:
        return self.name.replace("_", " ")

    def parse(self, text: str) -> Any:
        """The value `text` stands for, in this field's type: the one reading of a setting typed as text (a `train`
        flag, a TUI field, a bench override such as `lora_targets=q_proj,v_proj`). Booleans take true/false, yes/no,
        on/off or 1/0; lists are comma-separated; gradient_checkpointing also takes true/false (all/none).
        ValueError says what the text should be, in a few words a field can show beside it."""
        text = text.strip()
        if self.kind is bool:
            word = text.lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ValueError("must be true or false")
        if self.kind is tuple:
            try:
                return tuple(self.item(x.strip()) for x in text.split(",") if x.strip())
            except ValueError:
                raise ValueError("must be whole numbers separated by commas") from None
        if self.name == "gradient_checkpointing":
            return checkpoint_mode(text)
        try:
            return self.kind(text)
        except ValueError:
            raise ValueError("must be a whole number" if self.kind is int else
                             "must be a number (e.g. 2e-4)" if self.kind is float else "invalid") from None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _setting(f) -> Setting:
    meta = f.metadata
    kind = type(f.default)
    item = int if kind is tuple and "int" in str(f.type) else str
    choices = tuple(t["name"] for t in TABLE) if f.name == "preset" else meta.get("choices")
    return Setting(f.name, meta.get("help", ""), meta.get("group", RUN), kind, item, f.default, choices,
                   meta.get("label"), meta.get("flag") or "--" + f.name.replace("_", "-"), meta.get("bare"),
                   meta.get("off"))


SETTINGS: dict[str, Setting] = {f.name: _setting(f) for f in fields(TrainConfig)}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Settings as given (flags, the TUI, run.json) in TrainConfig's types, for config_for and config_from_dict
    alike: unknown names refused, None left out (the preset's value stays), comma text and JSON lists as tuples."""
    unknown = sorted(k for k in values if k not in SETTINGS)
    if unknown:
        raise InputError(f"unknown setting(s): {', '.join(unknown)}",
                         hint="`genaptitude-trainer train --help` lists the settings")
    out = {}
    for name, value in values.items():
        s = SETTINGS[name]
        if value is not None and s.kind is tuple and isinstance(value, (str, list, tuple)):
            parts = value.split(",") if isinstance(value, str) else value
            value = tuple(s.item(x.strip() if isinstance(x, str) else x) for x in parts if str(x).strip())
        if value is not None:
            out[name] = value
    return out


def config_for(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's config with the given fields replaced (None values are ignored)."""
    return replace(get_preset(preset).config, **_coerce(overrides))


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from its `to_dict` form (run.json, the TUI's run process); unknown keys are refused."""
    return TrainConfig(**_coerce(data))


# Settings whose value before they existed was not today's default: a checkpoint without them ran this way.
_BEFORE_THE_SETTING = {"instruction_turn": BEFORE_THE_SETTING}  # instruction and input joined in the user turn


def config_changes(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """`name old → new` for each setting `config` has that differs from `saved` (a checkpointed run's to_dict):
    what a resumed run tells the user it changed."""
    now = config.to_dict()
    if saved:
        saved = {**_BEFORE_THE_SETTING, **saved}
    return [f"{name} {saved[name]!r} → {now[name]!r}" for name in now if name in saved and saved[name] != now[name]]


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    config: TrainConfig
    reasons: dict[str, str] = field(default_factory=dict)  # field name -> why it has this value
    needs_cuda: bool = True
    min_vram_gib: float = 0.0  # the least free GPU memory `suggest` (core/suggest.py) picks it for


PRESETS: dict[str, Preset] = {
    t["name"]: Preset(config=TrainConfig(preset=t["name"], **t["values"]), **{k: v for k, v in t.items()
                                                                             if k != "values"})
    for t in TABLE
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}", hint=f"choose one of: {', '.join(PRESETS)}") from None


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


NF4_FROM_PARAMS = 1.0e9  # quantization "auto": 4-bit from this many base parameters up ...
# ... unless the 16-bit base takes at most this share of the memory the run may use. Measured on an H200 (Qwen2.5-1.5B
# shape, modern-bf16, one call, results/h200x2-issue15-2026-11-30/1-levers/): the bf16 base (2.9 GiB) against NF4 gave
# 49.1k against 47.1k tokens/s with the whole GPU, and 38.9k against 37.4k capped to 22 GiB usable (13% of it, the
# same 23 of 28 layers recomputed): no dequantisation in forward, recompute and backward, and less CPU per
# projection. Smaller shares of memory were not measured, so cards under ~19 GiB usable keep NF4 for this model.
UNQUANTISED_SHARE = 0.15


def quantization_for(setting: str, params: float | None, usable_gib: float | None = None,
                     weight_bytes: int = 2) -> tuple[str, str]:
    """What quantization "auto" stands for with a base of `params` parameters on a device where the run may use
    `usable_gib` (None: not known), its unquantised weights taking `weight_bytes` each (4 when the preset computes in
    fp32), and why (the run log's words). Under 1B parameters: none (the bf16 base is
    under 2 GB and 4-bit costs a small model more than it saves: SmolLM2-135M on an H200, one epoch, held-out exact
    match 0.92-0.97 pooled over 3 seeds in NF4, 0.975-1.00 unquantised). From 1B: none when the unquantised weights take
    at most UNQUANTISED_SHARE of the usable memory (faster, see above; and 4-bit weights cost quality), nf4
    otherwise, where 4-bit is what lets the base and long rows fit (Qwen2.5-1.5B: ~1.1 GB against 3.1 GB).
    `params` None (a model whose size cannot be read) gets nf4, the safe side for memory, as does an unknown
    memory. "nf4" and "none" stand for themselves."""
    if setting != "auto":
        return setting, f"quantization={setting}"
    if params is None:
        return "nf4", "auto: the model's size could not be read from its config, 4-bit NF4 to be safe on memory"
    size = f"{params / 1e9:.2f}B parameters"
    if params < NF4_FROM_PARAMS:
        return "none", (f"auto: {size}, under {NF4_FROM_PARAMS / 1e9:g}B: unquantised, 4-bit would cost this small "
                        "a model more quality than the memory it saves")
    weights = params * weight_bytes / 1024 ** 3
    bits = f"{8 * weight_bytes}-bit weights ({weights:.1f} GiB)"
    if usable_gib and weights <= UNQUANTISED_SHARE * usable_gib:
        return "none", (f"auto: {size}, but its {bits} are {weights / usable_gib:.0%} of the {usable_gib:.0f} GiB "
                        "usable: unquantised, faster than 4-bit and the weights as trained")
    room = ("usable memory unknown" if not usable_gib else
            f"its {bits} would be over {UNQUANTISED_SHARE:.0%} of the {usable_gib:.0f} GiB usable")
    return "nf4", f"auto: {size}, 4-bit NF4 from {NF4_FROM_PARAMS / 1e9:g}B ({room})"


def batch_label(config: TrainConfig) -> str:
    """How a run batches, in a few words: "≤32,768 tokens × 1" (token budget) or "16×1" (rows)."""
    if config.batch_tokens > 0:
        return f"≤{config.batch_tokens:,} tokens × {config.grad_accum}"
    return f"{config.batch_size}×{config.grad_accum}"


def batch_description(config: TrainConfig) -> tuple[str, str]:
    """What one optimizer update holds, as (label, detail), for the preset panel and the run's log."""
    if config.batch_tokens > 0:
        return "micro-batches", (f"≤{config.batch_tokens:,} tokens (≤{config.batch_size} rows) × "
                                 f"{config.grad_accum} per update")
    return "effective batch", f"{config.effective_batch} ({config.batch_size} × {config.grad_accum})"
