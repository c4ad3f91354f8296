"""Step lines read a step late (the GPU path, `lag` 1, run here on CPU tensors): each step's loss, gradient norm and
rate reach the log when the next step ends, in order, and before anything else said about their step (a save, an
evaluation, the end of the run)."""
from __future__ import annotations

import threading

import pytest
import torch
from transformers import TrainerControl, TrainerState

from core import events as ev
from core.train.callbacks import EventCallback, TokenCounter
from core.train.step_readout import StepReadout


def _callback(tmp_path, logging_steps=1):
    got = []
    counter = TokenCounter(lambda rows: rows)
    cb = EventCallback(got.append, threading.Event(), counter, tmp_path / "metrics.jsonl",
                       {"config": {"logging_steps": logging_steps}, "train_rows": 10, "eval_rows": 0,
                        "device": "cpu", "output_dir": str(tmp_path)}, "cpu")
    cb.readout = StepReadout("cpu", lag=1)
    return cb, counter, got


def _step(cb, counter, state, loss, norm, control=None):
    counter([{"input_ids": [1] * 100}])
    cb.readout.add_loss(torch.tensor(loss))
    cb.readout.grad_norm = torch.tensor(norm)
    state.global_step += 1
    cb.on_step_end(None, state, control or TrainerControl(), lr_scheduler=None,
                   optimizer=type("O", (), {"param_groups": [{"lr": 1e-3 * state.global_step}]})())


def test_each_step_is_reported_when_the_next_one_ends_and_the_last_at_the_end(tmp_path):
    cb, counter, got = _callback(tmp_path)
    state = TrainerState(global_step=0, max_steps=4)
    cb.on_train_begin(None, state, TrainerControl())
    _step(cb, counter, state, 2.0, 0.5)
    assert not [e for e in got if isinstance(e, ev.StepLogged)]  # step 1's values are read when step 2 ends
    _step(cb, counter, state, 1.5, 0.25)
    steps = [e for e in got if isinstance(e, ev.StepLogged)]
    assert [(e.step, e.loss, e.grad_norm, e.lr) for e in steps] == [(1, 2.0, 0.5, 1e-3)]
    assert steps[0].tokens_per_s > 0 and steps[0].eta_s is not None
    control = TrainerControl(should_save=True)  # a save at step 3: its line comes first
    _step(cb, counter, state, 1.0, 0.125, control)
    assert [e.step for e in got if isinstance(e, ev.StepLogged)] == [1, 2, 3]
    _step(cb, counter, state, 0.5, 0.0625)
    cb.on_train_end(None, state, TrainerControl())
    steps = [e for e in got if isinstance(e, ev.StepLogged)]
    assert [(e.step, e.loss) for e in steps] == [(1, 2.0), (2, 1.5), (3, 1.0), (4, 0.5)]
    assert cb.last_loss == 0.5
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and '"step": 4' in lines[-2]  # a step line and a memory line each


def test_logging_steps_average_the_steps_between_lines(tmp_path):
    cb, counter, got = _callback(tmp_path, logging_steps=2)
    state = TrainerState(global_step=0, max_steps=5)
    cb.on_train_begin(None, state, TrainerControl())
    for loss in (4.0, 3.0, 2.0, 1.0, 0.5):
        _step(cb, counter, state, loss, 1.0)
    cb.on_train_end(None, state, TrainerControl())
    # the first step has its own line; then every second step, with the mean of the steps since the last line
    assert [(e.step, e.loss) for e in got if isinstance(e, ev.StepLogged)] == [(1, 4.0), (2, 3.0), (4, 1.5)]


def test_an_evaluation_line_comes_after_its_steps_line(tmp_path):
    cb, counter, got = _callback(tmp_path)
    state = TrainerState(global_step=0, max_steps=4)
    cb.on_train_begin(None, state, TrainerControl())
    _step(cb, counter, state, 2.0, 0.5)
    _step(cb, counter, state, 1.0, 0.5)
    cb.on_log(None, state, TrainerControl(), logs={"eval_loss": 1.25})
    kinds = [(type(e).__name__, e.step) for e in got if isinstance(e, (ev.StepLogged, ev.EvalLogged))]
    assert kinds == [("StepLogged", 1), ("StepLogged", 2), ("EvalLogged", 2)]


def test_the_trainers_own_loggers_get_each_step_as_it_is_read(tmp_path):
    """With --tensorboard the Trainer's log (and so its TensorBoard callback) gets the values the step line shows."""
    cb, counter, got = _callback(tmp_path)
    logged = []
    cb.log_fn = logged.append
    state = TrainerState(global_step=0, max_steps=2)
    cb.on_train_begin(None, state, TrainerControl())
    _step(cb, counter, state, 2.0, 0.5)
    _step(cb, counter, state, 1.0, 0.25)
    cb.on_train_end(None, state, TrainerControl())
    assert logged == [{"loss": 2.0, "learning_rate": 1e-3, "grad_norm": 0.5},
                      {"loss": 1.0, "learning_rate": 2e-3, "grad_norm": 0.25}]


def test_a_workers_values_and_a_plain_norm_travel_with_the_loss():
    """Data-parallel extras (tokens, stop and save votes) and a gradient norm the clipping gave as a number: one
    vector with the loss, read back as the mean over workers (no process group here: nothing to sum)."""
    readout = StepReadout("cpu", workers=2, lag=0)
    readout.add_loss(torch.tensor(3.0))
    readout.grad_norm = 0.5
    readout.close(1, (100.0, 0.0, 1.0))
    readout.add_loss(torch.tensor(1.0))
    readout.close(2, (50.0, 1.0, 0.0))  # no clipping: no norm
    (one, two) = readout.ready(2)
    assert (one.step, one.loss, one.grad_norm, one.extra) == (1, 1.5, 0.25, [100.0, 0.0, 1.0])
    assert (two.step, two.loss, two.grad_norm, two.extra) == (2, 0.5, None, [50.0, 1.0, 0.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_closing_a_step_on_the_gpu_never_waits_for_it():
    """torch's sync debug mode raises on any operation that makes the CPU wait for the GPU."""
    readout = StepReadout("cuda", workers=2)
    loss = torch.randn((), device="cuda")
    torch.cuda._sleep(100_000_000)  # the GPU busy: a wait would be long, and is an error here
    torch.cuda.set_sync_debug_mode("error")
    try:
        readout.add_loss(loss)
        readout.grad_norm = torch.ones((), device="cuda")
        readout.close(1, (1000.0, 0.0, 0.0))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    (closed,) = readout.ready(flush=True)
    assert closed.extra == [1000.0, 0.0, 0.0] and closed.grad_norm == 0.5
