"""A training step on the GPU never makes the CPU wait for the GPU (CUDA only: run on a GPU box with
`python -m pytest tests/test_no_sync.py`; skipped elsewhere, including CI).

Each wait lets the GPU run dry while the CPU prepares the next step: where the CPU's kernel launches are the bound
(16k tokens a GPU in a `--gpus 2` split run) that serialises the two. torch's sync debug mode reports every
operation that waits (a blocking copy, `.item()`, a boolean index); the steps after the first two (Triton's
compilation, the allocator's growth) must report none.
"""
from __future__ import annotations

import threading
import traceback
import warnings
from dataclasses import replace

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_steady_training_steps_never_wait_for_the_gpu(tmp_path):
    from datasets import Dataset
    from transformers import TrainerCallback

    from core.presets import config_for
    from core.runs.output import RunDirs
    from core.train.bench import _id_tokenizer, build_arch, synthetic_rows
    from core.train.model_setup import build_trainer, load_model_from_path, plan_checkpointing

    if torch.cuda.device_count() > 1:
        pytest.skip("one process sees several GPUs (the Trainer would refuse): run with CUDA_VISIBLE_DEVICES=0")

    model_dir = build_arch("tiny", tmp_path / "model", "bfloat16")
    cfg = replace(config_for("modern-bf16"), model=str(model_dir), quantization="none", max_steps=6,
                  eval_fraction=0.0, save_every=0, save_every_minutes=0, batch_tokens=2048, max_length=256)
    ds = Dataset.from_dict(synthetic_rows(400, 512, 16, 200))
    model = load_model_from_path(cfg, model_dir, lambda e: None)
    plan_checkpointing(cfg, model, lambda e: None)
    trainer, _ = build_trainer(cfg, model, _id_tokenizer(), ds, None, RunDirs(tmp_path / "out", tmp_path, None),
                               lambda e: None, threading.Event(), {"config": cfg.to_dict(), "train_rows": len(ds),
                                                                   "eval_rows": 0, "device": "cuda",
                                                                   "output_dir": str(tmp_path / "out")})
    seen: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):  # warnings.showwarning's signature
        # the op, then our Python frames that led to it (torch's own left out); not torch's notice that the debug
        # mode is a prototype, given when it is turned on (torch 2.11, H100: the only "sync" this test saw)
        if "synchroniz" in str(message) and "is a prototype feature" not in str(message):
            frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-2]
                      if "/torch/" not in f.filename and "warnings" not in f.filename]
            seen.append(f"{str(message).splitlines()[0]} at " + " <- ".join(reversed(frames[-6:])))

    class Watch(TrainerCallback):
        caught = None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 2:
                self.caught = warnings.catch_warnings()
                self.caught.__enter__()
                warnings.simplefilter("always")
                warnings.showwarning = record
                torch.cuda.set_sync_debug_mode("warn")

        def on_step_end(self, args, state, control, **kw):
            if self.caught is not None and state.global_step == 5:
                torch.cuda.set_sync_debug_mode("default")
                self.caught.__exit__(None, None, None)
                self.caught = None

    trainer.add_callback(Watch())
    trainer.train()
    assert seen == [], "\n".join(seen)
