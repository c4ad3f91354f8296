"""The bridge from transformers' Trainer to our typed events (imported only once a run starts)."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from transformers import TrainerCallback

from core.events import CheckpointSaved, EvalLogged, MemorySample, RunStarted, StepLogged
from core.runs.output import write_atomic
from core.train import distributed
from core.train.memory import memory_sample

RUN_CONFIG = "run_config.json"  # in each checkpoint: the settings it was trained with (a resume says what changed)


class TokenCounter:
    """Wraps the data collator and counts real (non-padding) tokens on the CPU: no GPU sync per step."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0
        self.paused = False
        self.history: list[int] = []  # tokens of each training micro-batch, in order

    def __call__(self, examples):
        if not self.paused:
            n = sum(len(e["input_ids"]) for e in examples)
            self.tokens += n
            self.history.append(n)
        return self.collator(examples)


class EventCallback(TrainerCallback):
    def __init__(self, emit, stop_event: threading.Event, counter: TokenCounter, metrics_path: Path,
                 started: dict, device: str, window: int = 10):
        self.emit = emit
        self.stop_event = stop_event
        self.counter = counter
        self.metrics_path = metrics_path
        self.started = started  # RunStarted fields known before training
        self.device = device
        self.marks: deque[tuple[float, int, int]] = deque(maxlen=window + 1)  # (time, step, tokens)
        self.t0 = time.perf_counter()
        self.first_step = 0
        self.stopped_early = False
        self.last_loss: float | None = None
        self.last_eval: float | None = None
        self.workers = distributed.world_size()
        self.main = distributed.is_main()
        # A resumable checkpoint every N minutes of training (the config's save_every_minutes; 0: off), so a run
        # killed by a reboot or the OOM killer loses minutes, not hours. Read from the run's config as started.
        self.save_every_s = 60.0 * float((started.get("config") or {}).get("save_every_minutes") or 0.0)
        self.last_save = time.perf_counter()

    def _record(self, event) -> None:
        self.emit(event)
        if self.main:  # data-parallel: rank 0 keeps the run's metrics
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(event.to_json() + "\n")

    def _tokens(self) -> int:
        """Real tokens trained so far by all workers (a collective: every rank logs the same steps)."""
        return self.counter.tokens if self.workers == 1 else distributed.sum_across(self.counter.tokens, self.device)

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.last_save = time.perf_counter()
        self.first_step = state.global_step
        self.marks.append((self.t0, state.global_step, self._tokens()))
        self.emit(RunStarted(total_steps=state.max_steps, resumed_from_step=state.global_step, **self.started))

    def _check_stop(self, control) -> None:
        asked = self.stop_event.is_set()
        if self.workers > 1:  # every rank stops at the same step, or the others wait for it forever
            asked = distributed.any_across(asked, self.device)
        if asked and not self.stopped_early:
            self.stopped_early = True
            control.should_training_stop = True
            control.should_save = True  # a resumable checkpoint at this exact step

    def on_step_end(self, args, state, control, **kw):
        self._check_stop(control)
        self._check_save_time(control)

    def _check_save_time(self, control) -> None:
        if self.save_every_s <= 0:
            return
        due = time.perf_counter() - self.last_save >= self.save_every_s
        if self.workers > 1:  # every rank saves at the same step (the save has collectives of its own)
            due = distributed.any_across(due, self.device)
        if due:
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        now = time.perf_counter()
        step = state.global_step
        if "loss" in logs:
            tokens = self._tokens()
            self.marks.append((now, step, tokens))
            t_a, s_a, n_a = self.marks[0]
            span = max(now - t_a, 1e-9)
            rate = (tokens - n_a) / span
            step_time = span / max(step - s_a, 1)
            remaining = max(state.max_steps - step, 0)
            self.last_loss = float(logs["loss"])
            grad = logs.get("grad_norm")
            self._record(StepLogged(
                step=step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0), loss=self.last_loss,
                lr=float(logs.get("learning_rate", 0.0)), grad_norm=None if grad is None else float(grad),
                tokens_per_s=rate, elapsed_s=now - self.t0, eta_s=remaining * step_time if step > s_a else None))
            self._record(MemorySample(step=step, **memory_sample(self.device, self.workers)))
        if "eval_loss" in logs:
            self.last_eval = float(logs["eval_loss"])
            self._record(EvalLogged(step=step, eval_loss=self.last_eval))
        if self.workers == 1:  # (with workers, on_step_end's agreed check is the only one)
            self._check_stop(control)  # a stop asked while this step was logged still lands on this step

    def on_save(self, args, state, control, **kw):
        self.last_save = time.perf_counter()
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.main and path.is_dir():  # a killed run has no run.json: the checkpoint keeps its own settings
            write_atomic(path / RUN_CONFIG, json.dumps(self.started.get("config") or {}, indent=1) + "\n")
        self.emit(CheckpointSaved(step=state.global_step, path=str(path)))

