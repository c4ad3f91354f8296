"""A training run: the engine (TRL/PEFT run and its typed events), model set-up, callbacks, out-of-memory recovery,
memory sampling, data-parallel workers, the after-run learning check, and `bench`; the step's kernels (the
answer-only loss, the addmm LoRA forward, the Triton ops) live in kernels/."""
