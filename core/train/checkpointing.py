"""Which decoder layers recompute their activations in backward: a plan applied to the loaded model, or every layer
after a step ran out of memory. Its own module: the setup applies the plan, the Trainer subclass (core/train/trainer.py)
widens it mid-run, and neither imports the other for it."""
from __future__ import annotations


def decoder_layers(model) -> list:
    """The model's repeated decoder blocks, lowest first: the modules transformers checkpoints one by one."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def apply_checkpoint_plan(model, layers: int) -> int:
    """Recompute the lowest `layers` decoder layers in backward, keep the others' activations. Checkpointing was
    enabled on every layer at load (or on none); transformers reads each layer's flag at each forward, so a layer
    turned off here runs once and keeps its activations. Returns how many layers are checkpointed now."""
    blocks = decoder_layers(model)
    enabled = any(getattr(b, "_gradient_checkpointing_func", None) is not None for b in blocks)
    if not enabled:  # loaded without checkpointing: nothing to turn off, nothing that could be turned on
        return 0
    for i, block in enumerate(blocks):
        block.gradient_checkpointing = i < layers
    from core.estimate import recomputes_mlp_output
    from core.train.kernels.fused_blocks import recompute_mlp_output

    recompute_mlp_output(model, recomputes_mlp_output(layers))
    return sum(1 for b in blocks if b.gradient_checkpointing)


def checkpoint_all(model) -> bool:
    """Recompute every decoder layer (checkpointing enabled at load); True when some layer kept its activations."""
    blocks = decoder_layers(model)
    before = sum(1 for b in blocks if b.gradient_checkpointing)
    return apply_checkpoint_plan(model, len(blocks)) > before
