"""A resumed run with other settings than its checkpoint's says which, with both values (as torchtune's recipes
warn). Real engine, tiny model, CPU: stop, resume with the same settings (no warning), stop again, resume changed."""
from __future__ import annotations

import json

import pytest

from core import events as ev
from tests.tinymodels import train_tiny

pytestmark = pytest.mark.slow  # real runs of a tiny model (make test-fast skips them)


def _warnings(events):
    return [e.message for e in events if isinstance(e, ev.LogLine) and e.level == "warning"]


def test_resume_with_changed_settings_warns_naming_each_field_and_both_values(tiny_model_dir, small_dataset,
                                                                               tmp_path):
    out = tmp_path / "a"
    train_tiny(tiny_model_dir, small_dataset, out, stop_at=2, max_steps=5)
    ckpt = out / "checkpoints" / "checkpoint-2"
    assert json.loads((ckpt / "run_config.json").read_text())["lr"] == 1e-3  # the checkpoint keeps its settings

    _, same = train_tiny(tiny_model_dir, small_dataset, out, stop_at=3, resume=True, max_steps=5)
    assert next(e for e in same if isinstance(e, ev.RunStarted)).resumed_from_step == 2
    assert not [w for w in _warnings(same) if "differ" in w]

    (out / "run.json").unlink()  # as after a kill: only the checkpoint says what it was trained with
    _, changed = train_tiny(tiny_model_dir, small_dataset, out, resume=True, lr=2e-3, max_steps=6,
                            lora_dropout=0.05, instruction_turn="user")
    said = [w for w in _warnings(changed) if "differ" in w]
    assert said == ["resuming with settings that differ from the checkpoint's: max_steps 5 → 6, lr 0.001 → 0.002, "
                    "instruction_turn 'system' → 'user', lora_dropout 0.0 → 0.05; the run goes on with the new values"]
    assert [e.step for e in changed if isinstance(e, ev.StepLogged)] == [4, 5, 6]
    assert json.loads((out / "run.json").read_text())["config"]["lr"] == 2e-3

