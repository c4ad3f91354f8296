"""Load the base model (4-bit NF4 on CUDA when asked), attach LoRA, and build TRL's SFTTrainer."""
from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import replace

from core.errors import InputError
from core.events import LogLine, Phase
from core.presets import TrainConfig
from core.train.checkpointing import apply_checkpoint_plan, decoder_layers

DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def load_model_and_tokenizer(config: TrainConfig, emit, stop_event=None, resolved=None):
    """(tokenizer, model with LoRA, local model folder, config with `cpu_bf16` resolved for this CPU and
    quantization "auto" for this model: core.train.resolve's rules, each choice kept in `resolved` if given)."""
    from core.models import resolve, tokenizer_from
    from core.train.resolve import Resolved

    resolved = resolved if resolved is not None else Resolved(config)
    config = resolve_cpu_precision(config, emit, resolved)  # the CPU's, not the model's: said before the fetch
    emit(Phase("resolving model", config.model))
    path = resolve(config.model, on_phase=lambda n, d: emit(Phase(n, d)), emit=emit,
                   trust_remote_code=config.trust_remote_code, stop_event=stop_event)
    tok = tokenizer_from(path, config.trust_remote_code)
    config = resolve_quantization(config, path, emit, resolved)
    return tok, load_model_from_path(config, path, emit), path, config


def resolve_cpu_precision(config: TrainConfig, emit, resolved=None) -> TrainConfig:
    """`cpu_bf16` on a CPU run as this CPU has it (core.train.resolve.precision), said in the log."""
    from core.train.resolve import Resolved, precision

    return (resolved or Resolved(config)).take(*precision(config), emit)


def resolve_quantization(config: TrainConfig, path, emit, resolved=None) -> TrainConfig:
    """Quantization "auto" becomes nf4 or none for the model in `path` (core.train.resolve.quantization, from its
    parameter count, read from its config.json, and the memory the run may use now), said in the log; any other
    value is returned as it is."""
    if config.quantization != "auto":
        return config

    from transformers import AutoConfig

    from core.estimate import arch_of
    from core.train.distributed import local_rank
    from core.train.memory import usable_before_load
    from core.train.resolve import Resolved, quantization

    # this worker's GPU (cuda:LOCAL_RANK): the run has not made it the current device yet
    usable = usable_before_load(config, local_rank())
    try:
        params = arch_of(AutoConfig.from_pretrained(str(path), trust_remote_code=config.trust_remote_code)).params
    except (AttributeError, TypeError):  # an architecture without the usual size fields
        params = None
    return (resolved or Resolved(config)).take(*quantization(config, params, usable), emit)


def load_model_from_path(config: TrainConfig, path, emit):
    """The base model as the preset asks (NF4 or plain, dtype, device) with LoRA attached; quantization "auto" must
    be resolved first (resolve_quantization)."""
    import torch
    from transformers import AutoModelForCausalLM

    if config.quantization == "auto":
        raise ValueError("quantization 'auto' reached the loader: resolve it first (resolve_quantization)")

    emit(Phase("loading model", f"{path} ({config.quantization}, {config.compute_dtype}, {config.device})"))
    dtype = getattr(torch, DTYPES[config.compute_dtype])
    kwargs = dict(dtype=torch.float32 if config.kbit_prepare else dtype, trust_remote_code=config.trust_remote_code,
                  attn_implementation="sdpa")
    if config.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
    from core.train.distributed import local_rank

    kwargs["device_map"] = {"": local_rank()} if config.device == "cuda" else {"": "cpu"}  # one GPU per worker
    if config.device == "cuda":
        torch.cuda.set_device(local_rank())
    if config.device == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(config.cudnn_attention)
    if config.device == "cuda" and config.gpu_memory_fraction > 0:
        torch.cuda.set_per_process_memory_fraction(config.gpu_memory_fraction, 0)
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    model.config.use_cache = False
    if config.quantization == "nf4":
        n4 = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
        emit(LogLine(f"{n4} linear layers loaded in 4-bit NF4 (compute {config.compute_dtype})"))
    native_norm = False
    if config.torch_rms_norm and config.device == "cuda":
        from core.train.kernels.rms_norm import available, use_torch_rms_norm

        native_norm = available() and use_torch_rms_norm(model) > 0
    if config.liger and config.device == "cuda":
        _apply_liger(model, emit, rms_norm=not native_norm)
    if config.fused_rope and config.device == "cuda":
        from core.train.kernels.rope import use_fused_rope

        if not use_fused_rope(model):
            emit(LogLine("fused RoPE not available for this model (or no Triton): transformers' RoPE runs",
                         "warning"))
    if config.kbit_prepare:  # the old script's path: upcasts every non-quantised weight to fp32
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model,
                                                use_gradient_checkpointing=config.gradient_checkpointing != "none")
    elif config.gradient_checkpointing != "none":  # every layer; "auto" turns some off once the batches are known
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return no_embedding_gradient(attach_lora(model, config))
    return attach_lora(model, config)


def no_embedding_gradient(model):
    """Take off the hooks that make the (frozen) input embeddings' output require a gradient. transformers and PEFT
    add them with checkpointing for its reentrant form, which loses the LoRA gradients of a layer whose input needs
    none; the non-reentrant form used here does not. With them, backward computes the first layer's input gradient
    (its q/k/v and gate/up products, norms and RoPE) for nothing: about 1/56 of a step's matrix work."""
    embeddings = model.get_input_embeddings()
    for key, hook in list(embeddings._forward_hooks.items()):
        if getattr(hook, "__name__", "") in ("make_inputs_require_grads", "make_inputs_require_grad"):
            del embeddings._forward_hooks[key]
    return model


def plan_checkpointing(config: TrainConfig, model, emit):
    """Decide which decoder layers recompute in backward (core.estimate.checkpoint_plan, from the memory this
    process may use with the model loaded), apply it to the model, say it in the log, and return it."""
    from core.estimate import arch_of, checkpoint_plan
    from core.train.distributed import is_worker
    from core.train.memory import usable_gib

    usable = usable_gib(config) if config.gradient_checkpointing == "auto" and decoder_layers(model) else None
    # A data-parallel worker's config is its own share already (core.gpus.per_device, applied by the launcher):
    # the estimate must not divide it again (it did: 20 GiB planned for a 35 GiB peak at 16k tokens a GPU).
    mine = replace(config, gpus=1) if is_worker() else config
    plan = checkpoint_plan(mine, usable, arch_of(model.config))
    apply_checkpoint_plan(model, plan.layers)
    emit(LogLine(plan.describe()))
    return plan


def attach_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    linear_names = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                           if type(mod).__name__ in ("Linear", "Linear4bit", "Linear8bitLt")})
    missing = [t for t in config.lora_targets if t not in linear_names]
    if missing:
        raise InputError(f"LoRA targets not found in this model: {', '.join(missing)}",
                         hint=f"this model's linear layers are: {', '.join(linear_names)}")
    layers = None
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if config.lora_top_fraction < 1 and n_layers:
        keep = max(1, math.ceil(n_layers * config.lora_top_fraction))
        layers = list(range(n_layers - keep, n_layers))
    from transformers import set_seed

    set_seed(config.seed)  # LoRA A is initialised randomly: the same seed gives the same run
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), layers_to_transform=layers, bias="none",
                      task_type="CAUSAL_LM")
    # autocast_adapter_dtype (PEFT's default) keeps LoRA weights in fp32 under fp16/bf16 bases, which the fp16
    # grad scaler needs ("Attempting to unscale FP16 gradients" otherwise).
    model = trainable_to(get_peft_model(model, lora, autocast_adapter_dtype=True), config.lora_dtype)
    if config.fast_lora:
        from core.train.kernels.fast_lora import fuse_lora_forward

        fuse_lora_forward(model, grad=config.fused_lora_grad)
        if config.fused_blocks:
            from core.train.kernels.fused_blocks import fuse_blocks

            fuse_blocks(model)
    return model


@contextlib.contextmanager
def _module_names_kept(module):
    """Liger's per-instance call also rebinds names in the model's modeling module (`LlamaMLP = LigerSwiGLUMLP`,
    `LlamaRMSNorm = LigerRMSNorm`), so every model built later in the same process, a CPU one included, got Triton
    layers: on an H100 five CUDA tests that build CPU models after a GPU one failed with "Pointer argument cannot be
    accessed from Triton (cpu tensor?)". The instance keeps its kernels; the module gets its own names back."""
    before = dict(vars(module)) if module is not None else {}
    try:
        yield
    finally:
        for name, value in before.items():
            if vars(module).get(name) is not value:
                setattr(module, name, value)


def _apply_liger(model, emit, rms_norm: bool = True) -> None:
    """Fused RMSNorm (unless torch's fused one runs, `torch_rms_norm`) and SwiGLU kernels on the loaded model (our
    own loss replaces Liger's cross-entropy)."""
    try:
        from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance
    except ImportError as exc:
        emit(LogLine(f"Liger kernels not available ({exc}); running the plain PyTorch layers "
                     "(pip install liger-kernel for ~20% more tokens/s)", "warning"))
        return
    # Not Liger's RoPE: its Triton kernel takes the batch size as a compile-time constant, so every new number of
    # rows per micro-batch (token-budget batches vary) compiled it again: on an H100 every other step paid ~300 ms.
    with _module_names_kept(sys.modules.get(type(model).__module__)):
        _apply_liger_kernel_to_instance(model=model, rope=False, rms_norm=rms_norm, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)
    emit(LogLine("Liger kernels: fused RMSNorm and SwiGLU" if rms_norm else
                 "Liger kernels: fused SwiGLU (RMSNorm: torch's fused kernel)"))


def _fused_ce_available(emit) -> bool:
    """The fused cross-entropy is a Triton kernel (kernels/cross_entropy.py); torch's CUDA builds bring Triton."""
    from core.train.kernels import cross_entropy

    if cross_entropy.triton is None:
        emit(LogLine("Triton not available: the chunked LM-head loss runs instead of the fused cross-entropy",
                     "warning"))
        return False
    return True


def trainable_to(model, dtype: str = "float32"):
    """Every trainable (LoRA) weight in the preset's LoRA dtype, whatever the base dtype. fp32 by default: the fp16
    grad scaler cannot unscale half gradients, and fp32 master weights keep small updates. TRL casts QLoRA adapters
    to bf16 in its constructor, which would break T4s (no bf16), so this runs again after the trainer is built."""
    import torch

    want = getattr(torch, dtype)
    for p in model.parameters():
        if p.requires_grad and p.dtype != want:
            p.data = p.data.to(want)
    return model


def training_args(config: TrainConfig, dirs, has_eval: bool):
    from trl import SFTConfig

    from core.train.distributed import rehearsal

    if config.eval_every > 0:
        eval_kw = dict(eval_strategy="steps", eval_steps=config.eval_every)
    else:
        eval_kw = dict(eval_strategy="epoch")
    if not has_eval:
        eval_kw = dict(eval_strategy="no")
    save_kw = dict(save_strategy="steps", save_steps=config.save_every) if config.save_every > 0 else \
        dict(save_strategy="no")
    import dataclasses

    if "train_sampling_strategy" in {f.name for f in dataclasses.fields(SFTConfig)}:
        sampling_kw = dict(train_sampling_strategy="group_by_length" if config.group_by_length else "random")
    else:  # transformers before the rename (pyproject allows them)
        sampling_kw = dict(group_by_length=config.group_by_length)
    return SFTConfig(
        output_dir=str(dirs.checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim=config.optimizer,
        bf16=config.autocast == "bf16",
        fp16=config.autocast == "fp16",
        use_cpu=config.device == "cpu",
        gradient_checkpointing=False,  # enabled on the model already (non-reentrant), before LoRA
        # The loss line is ours (core/train/step_readout.py: read a step late, no sync a step); the Trainer's
        # logging would wait for the GPU at each logged step, and its nan/inf filter at every step.
        logging_strategy="no",
        logging_nan_inf_filter=False,
        save_total_limit=2,
        report_to=["tensorboard"] if config.tensorboard else "none",
        dataloader_num_workers=0,  # tokenised up front; worker processes hang on WSL (trl#1964)
        # Batches go to the GPU from pinned memory without waiting: a blocking copy (accelerate's default) waits for
        # the GPU to finish the step before, so the CPU could not prepare the next step while the GPU worked.
        accelerator_config={"non_blocking": config.device == "cuda"},
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient each step: no graph walk
        # No broadcast of the model's buffers from rank 0 before each forward: they are constants (RoPE's
        # frequencies) the same on every worker, and DDP walked every module to list them at each step (a third of
        # the module walks left in a 2-worker step's profile, core/train/module_walks.py has the others).
        ddp_broadcast_buffers=False,
        ddp_backend="gloo" if rehearsal() else None,  # (NCCL for GPUs, gloo for CPU processes: accelerate's pick)
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        max_length=config.max_length,
        padding_free=config.padding_free,
        **sampling_kw,
        dataset_kwargs={"skip_prepare_dataset": True},  # labels are built by core.data.render, not by TRL
        remove_unused_columns=False,
        prediction_loss_only=True,  # evaluation reports the loss; gathering every eval batch's logits is waste
        **eval_kw,
        **save_kw,
    )


def _collate_for(config: TrainConfig, collator, pad_id: int):
    """TRL's collator, plus what our loss and kernels want, computed on the CPU before the batch moves.

    - Without `mask_padding`, right-padded batches drop the attention mask: under causal attention a real token
      only sees tokens before it, never the padding after it, and padded positions carry no loss. SDPA then runs
      its causal flash kernel instead of a masked one (+45% tokens/s on an H100, same batches).
    - With the answer-only loss, `loss_index` lists the trained positions (core.train.kernels.loss.loss_positions).
    """
    from core.train.kernels.loss import loss_positions

    from core.data.collate import pad_batch

    def collate(examples):
        if config.padding_free:
            batch = collator(examples)
        else:  # the same tensors, filled through numpy (core/data/collate.py)
            batch = pad_batch(examples, pad_id, config.pad_to_multiple)
        # (trl's own loss, fast_loss off, counts the tokens from the mask: it keeps it.)
        if not config.mask_padding and not config.padding_free and config.fast_loss:
            batch.pop("attention_mask", None)
        if config.fast_loss:
            batch["loss_index"] = loss_positions(batch["labels"])
        return batch
    return collate


def build_trainer(config: TrainConfig, model, tok, train_ds, eval_ds, dirs, emit, stop_event, started):
    """The run's trainer (core.train.trainer.RunTrainer) with its collator, token counter and event callback."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from core.train.callbacks import EventCallback, TokenCounter

    collator = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=config.padding_free,
                                               pad_to_multiple_of=config.pad_to_multiple or None)
    counter = TokenCounter(_collate_for(config, collator, tok.pad_token_id))
    callback = EventCallback(emit, stop_event, counter, dirs.metrics, started, config.device)
    from core.train.distributed import world_size

    workers = world_size()
    fused_ce = config.fused_ce and config.fast_loss and config.device == "cuda" and _fused_ce_available(emit)

    from core.train.module_walks import ModuleWalks
    from core.train.trainer import RunTrainer

    trainer = RunTrainer(model=model, args=training_args(config, dirs, eval_ds is not None), train_dataset=train_ds,
                         eval_dataset=eval_ds, processing_class=tok, data_collator=counter, callbacks=[callback],
                         config=config, callback=callback, counter=counter, walks=ModuleWalks(), emit=emit,
                         workers=workers, fused_ce=fused_ce)
    trainable_to(trainer.model, config.lora_dtype)
    if config.tensorboard:
        callback.log_fn = trainer.log
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):  # our events replace their prints (they would break --json)
        trainer.remove_callback(cb)
    return trainer, callback
