"""What a run's settings become on this machine, for this model and this data: each choice with its reason.

A TrainConfig leaves some choices to the run; this module is their one owner. In the order a run meets them:

1. `per_device`: `gpus` > 1: each data-parallel worker's share of the batch, the effective batch kept (core.gpus).
2. `precision`: `cpu_bf16` on a CPU with AMX bf16 units: bf16 base weights and autocast (core.hardware).
3. `quantization`: "auto": 4-bit NF4 or unquantised, from the model's size and the memory the run may use.
4. `lr`: 0: LoRA's best rate for the model's family and width (core.presets.auto_lr).
5. `batches`: a small export's batches shrunk until the run makes `min_updates` steps (core.data.batching).
6. `checkpointing`: "auto": which decoder layers recompute in backward, from the memory left after loading
   (core.estimate.checkpoint_plan; the engine asks it through model_setup.plan_checkpointing, which applies it).

The first three need no model and no torch (`before_load`): the TUI's preset tab and estimate, `doctor` and the CLI's
plan line ask them, so what they show is what the run will do. The engine asks each as it learns the facts and keeps
the answers in a `Resolved`, which run.json records (`resolved`) and the log says, one line a choice.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from core.presets import TrainConfig, auto_lr, batch_label, quantization_for


@dataclass(frozen=True)
class Choice:
    """One setting the run chose: its value and the sentence the log says about it."""

    setting: str  # the TrainConfig field it decided, or "per_device" / "batches" / "precision" for several
    value: Any
    said: str


@dataclass
class Resolved:
    """The run's config with every choice made so far, and those choices (run.json's `resolved`)."""

    config: TrainConfig
    choices: list[Choice] = field(default_factory=list)

    def take(self, config: TrainConfig, choice: Choice | None, emit=None) -> TrainConfig:
        """Keep `config` and its choice (None: nothing was decided); say the choice through `emit` if given."""
        self.config = config
        if choice is not None:
            self.choices.append(choice)
            if emit is not None:
                from core.events import LogLine

                emit(LogLine(choice.said))
        return config

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {c.setting: {"value": c.value, "said": c.said} for c in self.choices}


def per_device(config: TrainConfig) -> tuple[TrainConfig, Choice | None]:
    """Each worker's share of a `gpus` > 1 run, the effective batch kept where it divides."""
    from core.gpus import per_device as share

    if config.gpus <= 1:
        return config, None
    shared, note = share(config, config.gpus)
    return shared, Choice("per_device", note, f"same effective batch on {config.gpus} workers: {note}")


def precision(config: TrainConfig, amx: bool | None = None) -> tuple[TrainConfig, Choice | None]:
    """`cpu_bf16` on a CPU run: bf16 base weights and bf16 autocast where the CPU has AMX bf16 units (`amx`; None:
    ask core.hardware.cpu_amx_bf16); fp32 as set elsewhere. LoRA weights stay in `lora_dtype` (fp32): AdamW's small
    late updates are not rounded away."""
    if config.device != "cpu" or not config.cpu_bf16 or config.autocast != "no":
        return config, None
    if amx is None:
        from core.hardware import cpu_amx_bf16

        amx = cpu_amx_bf16()
    if not amx:
        return config, None
    return (replace(config, compute_dtype="bfloat16", autocast="bf16"),
            Choice("precision", "bf16", "bf16 on this CPU's AMX units: base weights in bf16, bf16 autocast, LoRA "
                                        "weights in fp32 (--no-cpu-bf16: fp32 throughout)"))


def precision_words(config: TrainConfig) -> str:
    """How a (resolved) config computes, in a few words: "bf16 autocast", "fp32", "fp16 autocast, NF4 base"..."""
    words = {"bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(config.autocast) or \
        {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(config.compute_dtype, config.compute_dtype)
    if config.autocast != "no" and config.compute_dtype != "float32":
        words = f"{words}, {_short(config.compute_dtype)} base weights"
    return words


def _short(dtype: str) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def quantization(config: TrainConfig, params: float | None, usable_gib: float | None) -> tuple[TrainConfig,
                                                                                                 Choice | None]:
    """Quantization "auto" as nf4 or none for a base of `params` parameters where the run may use `usable_gib`
    (core.presets.quantization_for owns the rule); any other value stands."""
    if config.quantization != "auto":
        return config, None
    from core.estimate import weight_bytes

    value, why = quantization_for("auto", params, usable_gib, weight_bytes(config))
    return (replace(config, quantization=value),
            Choice("quantization", value, f"base weights {'in 4-bit NF4' if value == 'nf4' else 'unquantised'} "
                                          f"({why}; --quantization overrides)"))


def learning_rate(config: TrainConfig, model_type: str, hidden_size: int) -> tuple[TrainConfig, Choice | None]:
    """`lr = 0` (the GPU presets) as the rate core.presets.auto_lr gives a model of this family and width."""
    if config.lr > 0:
        return config, None
    lr = auto_lr(model_type, hidden_size)
    return (replace(config, lr=lr),
            Choice("lr", lr, f"learning rate {lr:.2e}: LoRA's best rate for a {model_type} model {hidden_size} "
                             "wide (--lr overrides)"))


def batches(config: TrainConfig, lengths: list[int], workers: int) -> tuple[TrainConfig, Choice | None,
                                                                             str | None]:
    """A small export's batches (accumulation, then the token budget) shrunk so the run makes `min_updates`
    optimizer steps (core.data.batching owns the rule), and the warning when it still makes too few."""
    from core.data.batching import few_updates_warning, plan_for

    plan = plan_for(config, lengths, workers)
    fitted = replace(config, batch_tokens=plan.batch_tokens, grad_accum=plan.grad_accum, batch_size=plan.batch_size)
    choice = None
    if fitted != config:
        choice = Choice("batches", {"batch_tokens": plan.batch_tokens, "grad_accum": plan.grad_accum,
                                    "batch_size": plan.batch_size},
                        f"small dataset ({len(lengths)} rows): {batch_label(fitted)} per update instead of "
                        f"{batch_label(config)}, so the run makes {plan.updates} optimizer steps "
                        f"(≥{config.min_updates} where the data allows: LoRA learns from the number of updates)")
    return fitted, choice, few_updates_warning(plan, len(lengths))


def before_load(config: TrainConfig, *, amx: bool | None = None, usable_gib: float | None = None,
                params: float | None = None) -> Resolved:
    """The choices made before any model loads, from the hardware and the model's name (no torch): the precision,
    and quantization "auto" (from `params`, else the size the model's name suggests, core.estimate.arch_for).
    What the TUI and `doctor` show; a run makes the same choices from what it reads at load."""
    resolved = Resolved(config)
    resolved.take(*precision(config, amx))
    if resolved.config.quantization == "auto":
        from core.estimate import arch_for

        resolved.take(*quantization(resolved.config, params if params is not None else
                                    arch_for(config.model).params, usable_gib))
    return resolved
