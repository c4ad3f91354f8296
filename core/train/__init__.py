"""A training run: the engine (TRL/PEFT run and its typed events), model set-up, callbacks, the answer-only loss,
the addmm LoRA forward, out-of-memory recovery, memory sampling, data-parallel workers, the after-run learning
check, and `bench`."""
