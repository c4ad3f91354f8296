"""The run's Trainer: TRL's SFTTrainer with what a run here adds to its step (built by
core.train.model_setup.build_trainer, which hands it the run's pieces).

Each override says what it changes; everything else is TRL's and transformers' own loop. Imported only when a run
builds its trainer (it imports trl and torch).
"""
from __future__ import annotations

import torch
from trl import SFTTrainer

from core.events import LogLine, OomRecovered
from core.presets import TrainConfig


class RunTrainer(SFTTrainer):
    """SFTTrainer for one run: out-of-memory recovery, the answer-only loss, token-budget batches, the step's loss
    and gradient norm read without a sync, and the per-step module walks made once (core/train/module_walks.py)."""

    splits = 1  # micro-batch split factor after out-of-memory errors (only grows)

    def __init__(self, *args, config: TrainConfig, callback, counter, walks, emit, workers: int, fused_ce: bool,
                 **kwargs) -> None:
        self.run_config, self.run_callback, self.counter, self.walks = config, callback, counter, walks
        self.emit, self.workers, self.fused_ce = emit, workers, fused_ce
        # answer_only_loss divides by num_items_in_batch itself. The library's loss (fast_loss off) is scaled as trl
        # and transformers decide: saying True for it broke it on transformers < 5.19, where trl records True by
        # putting a string into `compute_loss_func`, which SFTTrainer.compute_loss then calls.
        self.loss_is_scaled_for_ga = True if config.fast_loss else None
        super().__init__(*args, **kwargs)
        self._keep_grad_norm()

    def _keep_grad_norm(self) -> None:
        """The clipping also hands the step's gradient norm to the readout (the Trainer's own log is off), and clips
        the trainable parameters listed once rather than walking every parameter of the model (module_walks)."""
        clip = self.accelerator.clip_grad_norm_
        walks, readout = self.walks, self.run_callback.readout

        def clip_and_keep(parameters, *args, **kwargs):
            listed = walks.gradients_of_listed()
            readout.grad_norm = norm = clip(parameters if listed is None else listed, *args, **kwargs)
            return norm

        self.accelerator.clip_grad_norm_ = clip_and_keep

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch, recovered from running out of memory: first by recomputing every layer (an "auto"
        recompute plan that missed), then by splitting the micro-batch in halves (the same gradients, said as an
        OomRecovered event). Its loss goes to the readout, read a step later without a sync."""
        from core.train.checkpointing import checkpoint_all
        from core.train.oom import free_memory, injected_oom, restore_grads, save_grads, split_inputs

        config, walks = self.run_config, self.walks
        rows = inputs["input_ids"].shape[0]
        params = walks.trainable(model)
        walks.zero_grad_listed(model)  # (core/train/module_walks.py; undone when train() returns)
        saved = save_grads(params) if any(p.grad is not None for p in params) else None
        while True:
            try:
                pieces = split_inputs(inputs, self.splits)
                loss = None
                for piece in pieces:
                    injected_oom(piece["input_ids"].shape[0])
                    with walks.train_walk_skipped(model):  # (its model.train(), see core/train/module_walks)
                        piece_loss = super().training_step(model, piece, num_items_in_batch)
                    loss = piece_loss if loss is None else loss + piece_loss
                self.run_callback.readout.add_loss(loss)  # read a step later, without a sync (step_readout)
                return loss
            except torch.OutOfMemoryError:
                # an "auto" plan that missed: recompute every layer (the batch stays whole) before splitting
                recompute = self.workers == 1 and checkpoint_all(model)
                size = -(-rows // self.splits)
                if not recompute and (size <= 1 or config.padding_free or self.workers > 1):
                    raise  # nothing left to split (data-parallel ranks must run the same backwards)
                if saved is not None:  # the step starts again from the gradients it was given
                    restore_grads(params, saved)
                else:
                    model.zero_grad(set_to_none=True)
                free_memory()
                if recompute:
                    self.emit(LogLine("out of memory with some layers' activations kept: activation checkpointing "
                                      "on all layers from now on", "warning"))
                    continue
                old = self.splits
                self.splits *= 2
                self.emit(OomRecovered(step=self.state.global_step + 1, old_batch_size=size,
                                       new_batch_size=-(-rows // self.splits),
                                       old_grad_accum=config.grad_accum * old,
                                       new_grad_accum=config.grad_accum * self.splits))

    def floating_point_ops(self, inputs):
        """The Trainer's estimate (6 × input tokens × parameters without embeddings, for its total_flos), with the
        parameters counted once instead of at every micro-batch."""
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        return 6 * inputs[main].numel() * self.walks.parameter_count(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The answer-only loss (core/train/kernels/loss.py: the LM head at trained positions only, fused
        cross-entropy where set), or with fast_loss off the library's loss over logits at every position."""
        config = self.run_config
        if not config.fast_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from core.train.kernels.loss import answer_only_loss

        with self.accelerator.autocast():
            loss = answer_only_loss(model, inputs, num_items_in_batch,
                                    fused_chunk=config.fused_ce_chunk if self.fused_ce else 0)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # The count is summed over all workers and DDP averages their gradients: scale back, as
            # Trainer.compute_loss does, so N workers step exactly as one process with N× accumulation.
            loss = loss * self.accelerator.num_processes
        # No logits here: an empty dict, which transformers' prediction_step (trl < 1.x's eval path) reads as
        # "no outputs" where it would slice None.
        return (loss, {}) if return_outputs else loss

    def get_train_dataloader(self):
        """With a token budget (batch_tokens > 0), micro-batches of up to that many tokens (and batch_size rows),
        the same for every worker (core.data.batching.TokenBudgetSampler); otherwise the Trainer's own loader."""
        config = self.run_config
        if config.batch_tokens <= 0:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        from core.data.batching import TokenBudgetSampler

        sampler = TokenBudgetSampler([len(r) for r in self.train_dataset["input_ids"]], config.batch_tokens,
                                     config.batch_size, seed=config.seed, workers=self.workers)
        return self.accelerator.prepare(DataLoader(
            self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator, num_workers=0,
            pin_memory=self.args.dataloader_pin_memory))

    def train(self, *args, **kwargs):
        """The Trainer's loop; the module walks it skipped are restored when it returns, however it returns."""
        try:
            return super().train(*args, **kwargs)
        finally:
            self.walks.restore()

    def evaluate(self, *args, **kwargs):
        """The Trainer's evaluation; its batches are not counted as training throughput."""
        self.counter.paused = True
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.counter.paused = False
