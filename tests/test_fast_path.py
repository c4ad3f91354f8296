"""The speed work does not change what is learned: the fast path (addmm LoRA forward, answer-only chunked loss, no
attention mask on right-padded rows) gives the same loss curve and the same adapter as the reference path (PEFT's
forward, the library's full-vocabulary loss, padding mask), on the same tiny data and batches."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from core import events as ev
from core.presets import config_for
from core.train.engine import train


def run(model_dir, dataset, out, **kw):
    events = []
    cfg = config_for("cpu", model=str(model_dir), max_steps=12, lr=1e-2, eval_fraction=0.1,
                     **{"cpu_bf16": False, **kw})  # fp32 on any CPU: both paths are compared to float rounding
    train(cfg, str(dataset), str(out), on_event=events.append)
    losses = [e.loss for e in events if isinstance(e, ev.StepLogged)]
    final = next(e for e in events if isinstance(e, ev.Finished))
    return losses, final, load_file(str(out / "adapter_model.safetensors"))


def assert_learned_the_same(ref, got) -> None:
    """Two runs of `run` (losses, Finished, adapter): the same 12-step loss curve (one that moves, so agreement means
    something), eval loss and adapter weights, up to float rounding."""
    (ref_losses, ref_final, ref_w), (losses, final, w) = ref, got
    assert len(ref_losses) == len(losses) == 12
    assert max(ref_losses) - min(ref_losses) > 0.1, ref_losses  # lr 1e-2: the curve moves
    for a, b in zip(ref_losses, losses):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (ref_losses, losses)
    assert abs(ref_final.eval_loss - final.eval_loss) <= 1e-3 * ref_final.eval_loss
    assert ref_w.keys() == w.keys()
    for k in ref_w:
        torch.testing.assert_close(w[k], ref_w[k], rtol=1e-3, atol=1e-4)


REFERENCE = dict(fast_lora=False, fast_loss=False, mask_padding=True)
FAST = dict(fast_lora=True, fast_loss=True, mask_padding=False)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_qwen_dir", "tiny_model_dir"])
def test_fast_and_reference_paths_learn_the_same(model, request, small_dataset, tmp_path):
    model_dir = request.getfixturevalue(model)
    assert_learned_the_same(run(model_dir, small_dataset, tmp_path / "ref", **REFERENCE),
                            run(model_dir, small_dataset, tmp_path / "fast", **FAST))


def test_addmm_forward_matches_peft_forward_with_dropout_and_scaling():
    from peft import LoraConfig, get_peft_model

    from core.train.kernels.fast_lora import fuse_lora_forward

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.ReLU(), torch.nn.Linear(48, 16))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=12, lora_dropout=0.2, target_modules=["0", "2"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # B starts at zero: make the adapter contribute
    x = torch.randn(3, 5, 32)
    model.eval()
    expected = model(x)
    assert fuse_lora_forward(model) == 2
    torch.testing.assert_close(model(x), expected)
    model.train()  # dropout active: same random stream gives the same result
    torch.manual_seed(1)
    fused = model(x)
    for m in model.modules():
        if hasattr(m, "_peft_forward"):
            m.forward = m._peft_forward
    torch.manual_seed(1)
    torch.testing.assert_close(fused, model(x))
