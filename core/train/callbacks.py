"""The bridge from transformers' Trainer to our typed events (imported only once a run starts)."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from transformers import TrainerCallback

from core.events import CheckpointSaved, Diverged, EvalLogged, LogLine, MemorySample, RunStarted, StepLogged
from core.runs.output import write_atomic
from core.startup import seconds_since_start
from core.train import distributed
from core.train.divergence import Watch, advice
from core.train.memory import memory_sample
from core.train.step_readout import StepReadout

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
        self.readout = StepReadout(device, self.workers)
        self.logging_steps = max(1, int((started.get("config") or {}).get("logging_steps") or 1))
        self._loss_sum, self._loss_steps = 0.0, 0  # steps read since the last line (logging_steps > 1)
        self.log_fn = None  # the Trainer's log, for its own loggers (TensorBoard): set by build_trainer
        self.startup: dict[str, float] = {}  # seconds from the start-up clock (core/startup.py): run.json's "startup"
        config = started.get("config") or {}
        self.watch = Watch(fp16_scaler=config.get("autocast") == "fp16")  # core/train/divergence.py: its one rule
        self.advice = advice(config.get("lr"), config.get("autocast") or "no")

    def _record(self, event) -> None:
        self.emit(event)
        if self.main:  # data-parallel: rank 0 keeps the run's metrics
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(event.to_json() + "\n")

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.last_save = time.perf_counter()
        self.startup = {"to_training_s": round(seconds_since_start(), 2)}
        self.first_step = state.global_step
        self.marks.append((self.t0, state.global_step, self.counter.tokens * self.workers))  # (all start alike)
        self.emit(RunStarted(total_steps=state.max_steps, resumed_from_step=state.global_step, **self.started))

    def _check_stop(self, control) -> None:
        if self.stop_event.is_set() and not self.stopped_early:
            self._stop(control)

    def _stop(self, control) -> None:
        self.stopped_early = True
        control.should_training_stop = True
        control.should_save = True  # a resumable checkpoint at this exact step

    def _save_due(self) -> bool:
        return self.save_every_s > 0 and time.perf_counter() - self.last_save >= self.save_every_s

    def on_step_end(self, args, state, control, **kw):
        """Close this step's readout (core/train/step_readout.py) and report the steps it has ready. One worker
        checks its stop and save clocks itself; workers vote, and act on the votes they read together."""
        step = state.global_step
        votes = () if self.workers == 1 else (self.counter.tokens, float(self.stop_event.is_set()),
                                              float(self._save_due()))
        self.readout.close(step, votes, {"time": time.perf_counter(), "tokens": self.counter.tokens,
                                         "lr": _learning_rate(kw), "epoch": float(state.epoch or 0.0),
                                         "max_steps": state.max_steps})
        self._report(self.readout.ready(step), control)
        if self.workers == 1:
            self._check_stop(control)  # (after reporting: a stop asked while a step was shown lands on it)
            if self._save_due():
                control.should_save = True
        if control.should_save or control.should_evaluate or control.should_training_stop:
            self._report(self.readout.ready(flush=True), control)  # this step's line before its save or eval
        self._no_nan_saves(control)

    def _no_nan_saves(self, control) -> None:
        """Weights made NaN by a diverged step are neither saved nor evaluated: the run stops with the checkpoints
        it took before (core/train/divergence.py)."""
        if self.watch.fatal is not None:
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False

    def on_epoch_end(self, args, state, control, **kw):
        self._no_nan_saves(control)  # (after the Trainer's own callback asked for the epoch's eval)

    def _report(self, closed: list, control) -> None:
        first = bool(closed) and "to_first_step_s" not in self.startup
        if first:
            self.startup["to_first_step_s"] = round(seconds_since_start(), 2)
        for c in closed:
            if self.workers > 1:
                tokens, stop, save = c.extra
                if stop and not self.stopped_early:
                    self._stop(control)
                if save:
                    control.should_save = True
            else:
                tokens = c.meta["tokens"]
            self._loss_sum += c.loss
            self._loss_steps += 1
            found = self.watch.step(c.step, c.loss, c.grad_norm)  # (the step that shows it is always shown)
            if found is None and c.step % self.logging_steps and c.step != 1:
                continue
            self._log_step(c, tokens, self._loss_sum / self._loss_steps)
            self._loss_sum, self._loss_steps = 0.0, 0
            if found is not None:
                self.emit(Diverged(step=found.step, why=found.why, fatal=found.fatal, advice=self.advice))
                self._no_nan_saves(control)
        if first:
            self._say_startup()

    def _say_startup(self) -> None:
        """How long the start-up took, said once, after the first step's line. Its end is when the first step's
        loss was read (on a GPU one step late: the step is done, not only queued). Imports, model loading,
        tokenizing and the Trainer's set-up come before training begins; the first step adds kernel compilation
        (Triton) and the allocator's first requests."""
        total = self.startup["to_first_step_s"]
        before = self.startup.get("to_training_s", total)
        self.emit(LogLine(f"start-up: first step done {total:.1f} s after the command began (imports, model and "
                          f"data {before:.1f} s, the first step {total - before:.1f} s)"))

    def _log_step(self, c, tokens: float, loss: float) -> None:
        now, step = c.meta["time"], c.step
        self.marks.append((now, step, tokens))
        t_a, s_a, n_a = self.marks[0]
        span = max(now - t_a, 1e-9)
        step_time = span / max(step - s_a, 1)
        remaining = max(c.meta["max_steps"] - step, 0)
        self.last_loss = loss
        self._record(StepLogged(
            step=step, total_steps=c.meta["max_steps"], epoch=c.meta["epoch"], loss=loss, lr=c.meta["lr"],
            grad_norm=c.grad_norm, tokens_per_s=(tokens - n_a) / span, elapsed_s=now - self.t0,
            eta_s=remaining * step_time if step > s_a else None))
        if self.main:  # (another worker's events go nowhere: no NVML reads for them)
            self._record(MemorySample(step=step, **memory_sample(self.device, self.workers)))
        if self.log_fn is not None:  # the Trainer's own log (TensorBoard), with the values just read
            self.log_fn({"loss": loss, "learning_rate": c.meta["lr"],
                         **({} if c.grad_norm is None else {"grad_norm": c.grad_norm})})

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "eval_loss" in logs:
            self._report(self.readout.ready(flush=True), control)
            self.last_eval = float(logs["eval_loss"])
            self._record(EvalLogged(step=state.global_step, eval_loss=self.last_eval))

    def on_train_end(self, args, state, control, **kw):
        self._report(self.readout.ready(flush=True), control)

    def on_save(self, args, state, control, **kw):
        self.last_save = time.perf_counter()
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.main and path.is_dir():  # a killed run has no run.json: the checkpoint keeps its own settings
            write_atomic(path / RUN_CONFIG, json.dumps(self.started.get("config") or {}, indent=1) + "\n")
        self.emit(CheckpointSaved(step=state.global_step, path=str(path)))


def _learning_rate(kw: dict) -> float:
    """The rate the next step uses, as the Trainer logs it (its scheduler has stepped)."""
    scheduler, optimizer = kw.get("lr_scheduler"), kw.get("optimizer")
    try:
        return float(scheduler.get_last_lr()[0])
    except (AttributeError, IndexError, TypeError):
        return float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0
