"""The per-step walks over every module, done once (core/train/module_walks.py): the same answers as the walks
themselves, and model.train() still walks whenever a mode would change."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

from core.train.module_walks import ModuleWalks


@pytest.fixture
def lora_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from core.presets import config_for
    from core.train.model_setup import attach_lora

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    model = attach_lora(model, config_for("cpu", lora_dropout=0.1))  # dropout modules: their mode matters
    model.train()
    return model


def _spy_on_leaf(model, monkeypatch, kind=torch.nn.Dropout) -> list:
    """Calls of one leaf module's train(), as the full walk makes them."""
    leaf = [m for m in model.modules() if isinstance(m, kind)][0]
    calls: list = []
    original = leaf.train
    monkeypatch.setattr(leaf, "train", lambda mode=True: (calls.append(mode), original(mode))[1])
    return calls


def test_the_lists_and_counts_are_the_walks_answers(lora_model):
    walks = ModuleWalks()
    trainable = walks.trainable(lora_model)
    assert trainable and trainable == [p for p in lora_model.parameters() if p.requires_grad]
    assert walks.trainable(lora_model) is trainable  # listed once
    assert walks.parameter_count(lora_model) == lora_model.num_parameters(exclude_embeddings=True)


def test_train_returns_at_once_only_when_every_module_trains_already(lora_model, monkeypatch):
    walks = ModuleWalks()
    calls = _spy_on_leaf(lora_model, monkeypatch)
    with walks.train_walk_skipped(lora_model):
        assert lora_model.train() is lora_model
    assert calls == []  # nothing to change: no walk
    assert "train" not in vars(lora_model)  # the class's method again afterwards

    lora_model.eval()  # as the Trainer's evaluation leaves it
    calls.clear()
    with walks.train_walk_skipped(lora_model):
        lora_model.train()
    assert calls == [True] and all(m.training for m in lora_model.modules())

    with walks.train_walk_skipped(lora_model):
        lora_model.train(False)  # another mode: the full walk
    assert not any(m.training for m in lora_model.modules())


def test_a_module_left_in_eval_mode_is_put_back_in_training(lora_model):
    walks = ModuleWalks()
    dropout = [m for m in lora_model.modules() if isinstance(m, torch.nn.Dropout)][1]
    dropout.eval()
    with walks.train_walk_skipped(lora_model):
        lora_model.train()
    assert dropout.training


def test_a_module_with_its_own_train_method_is_always_walked(lora_model, monkeypatch):
    class Counting(torch.nn.Module):
        seen = 0

        def train(self, mode=True):
            Counting.seen += 1
            return super().train(mode)

    lora_model.extra = Counting()
    lora_model.train()
    Counting.seen = 0
    with ModuleWalks().train_walk_skipped(lora_model):
        lora_model.train()
    assert Counting.seen == 1


def _cpu_trainer(tmp_path, name="run"):
    from datasets import Dataset

    from core.presets import config_for
    from core.runs.output import RunDirs
    from core.train.bench import _id_tokenizer, build_arch, synthetic_rows
    from core.train.model_setup import build_trainer, load_model_from_path

    model_dir = tmp_path / "model"
    if not model_dir.exists():
        build_arch("tiny", model_dir, "float32")
    cfg = replace(config_for("cpu"), model=str(model_dir), max_steps=6, eval_fraction=0.0, save_every_minutes=0)
    ds = Dataset.from_dict(synthetic_rows(24, 512, 8, 16))
    model = load_model_from_path(cfg, model_dir, lambda e: None)
    out = tmp_path / name
    trainer, _ = build_trainer(cfg, model, _id_tokenizer(), ds, None, RunDirs(out, tmp_path, None),
                               lambda e: None, threading.Event(),
                               {"config": cfg.to_dict(), "train_rows": len(ds), "eval_rows": 0, "device": "cpu",
                                "output_dir": str(out)})
    return trainer


def test_a_real_run_walks_the_modules_once_not_at_every_step(tmp_path, monkeypatch):
    """The Trainer's per-step model.train(), parameter count, clipping list and zero_grad no longer walk the model:
    a leaf module's train() runs at the start only, whatever the number of steps; the flop estimate is the
    library's; and afterwards the model's own zero_grad is back."""
    from trl import SFTTrainer

    trainer = _cpu_trainer(tmp_path)
    inputs = {"input_ids": torch.zeros(3, 17, dtype=torch.long)}
    assert trainer.floating_point_ops(inputs) == SFTTrainer.floating_point_ops(trainer, inputs) > 0
    calls = _spy_on_leaf(trainer.model, monkeypatch, torch.nn.Embedding)
    counted, walked = [], []
    count, parameters = trainer.model.num_parameters, trainer.model.parameters
    monkeypatch.setattr(trainer.model, "num_parameters", lambda *a, **k: (counted.append(1), count(*a, **k))[1])

    def walking(*args, **kwargs):  # counts the walks made, not the generators asked for and never read
        walked.append(1)
        yield from parameters(*args, **kwargs)

    monkeypatch.setattr(trainer.model, "parameters", walking)
    trainer.train()
    assert trainer.state.global_step == 6
    assert len(calls) <= 2, calls  # the Trainer's own set-up, not once a step
    assert len(counted) <= 1  # the parameters counted once, not at every micro-batch
    assert len(walked) <= 6, len(walked)  # set-up (5 here), not the clipping's and zero_grad's two walks a step
    assert "zero_grad" not in vars(trainer.model)


def test_the_run_trains_the_same_weights_as_with_the_walks(tmp_path, monkeypatch):
    """Same steps, same LoRA weights to the last bit, with the walks listed once or made at every step."""
    from contextlib import nullcontext

    def weights(trainer):
        trainer.train()
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}

    listed = weights(_cpu_trainer(tmp_path, "listed"))
    monkeypatch.setattr(ModuleWalks, "gradients_of_listed", lambda self: None)
    monkeypatch.setattr(ModuleWalks, "zero_grad_listed", lambda self, model: None)
    monkeypatch.setattr(ModuleWalks, "train_walk_skipped", lambda self, model: nullcontext())
    walked = weights(_cpu_trainer(tmp_path, "walked"))
    assert listed.keys() == walked.keys() and listed
    assert all(torch.equal(listed[n], walked[n]) for n in listed)
    assert any(not torch.equal(listed[n], torch.zeros_like(listed[n])) for n in listed)
