"""The seam between the UI and `core/`: everything slow or heavy goes through an `Engine`.

`RealEngine` imports the core modules inside its methods, so importing the app and painting the first screen
never loads torch or transformers. Tests pass a scripted fake with the same methods.
All methods except `suggest`, `format_label` and `estimate` may be slow: call them from thread workers.
"""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from core.events import Event
from core.presets import TrainConfig


class Engine:
    """What the TUI needs from the engine. `suggest` and `format_label` are pure and shared by every engine."""

    def probe(self) -> Any:
        """A `core.hardware.HardwareReport` (NVML only: no torch import)."""
        raise NotImplementedError

    def sample(self) -> list:
        """`core.hardware.GpuSample`s for the once-a-second refresh; [] without NVML."""
        raise NotImplementedError

    def read_dataset(self, path: str, skip_invalid: bool = False) -> Any:
        """A `core.data.dataset.DatasetReport`; raises `DatasetError` naming the bad lines."""
        raise NotImplementedError

    def preview(self, model: str, example: Any, max_length: int, truncation: str = "keep-answer",
                instruction_turn: str = "system") -> Any:
        """A `core.data.render.RenderedExample`: the exact text the model sees (an instruction/input row laid out as
        `instruction_turn` gives with this model, a long row fitted by `truncation`) and which tokens carry the loss."""
        raise NotImplementedError

    def length_stats(self, model: str, examples: list, max_length: int, instruction_turn: str = "system") -> Any:
        """A `core.data.render.LengthStats` over the examples' token lengths, and what each truncation does."""
        raise NotImplementedError

    def instruction_turn(self, model: str, setting: str) -> str:
        """The layout `setting` gives with this model (core.data.layout.instruction_turn_for: the user turn where
        its chat template has no system role)."""
        return setting

    def estimate(self, config: TrainConfig, usable_gib: float | None = None) -> Any:
        """A `core.estimate.VramEstimate` (cheap, pure Python); `usable_gib`: the memory the run's GPUs leave it, which
        quantization "auto" depends on."""
        raise NotImplementedError

    def train(self, config: TrainConfig, dataset_path: str, output_dir: str, *,
              on_event: Callable[[Event], None], stop_event: threading.Event, **kw: Any) -> Path:
        """Run a whole training in the calling thread, sending events to `on_event`."""
        raise NotImplementedError

    def live_runs(self, output_dir: str) -> list:
        """`core.runs.history.RunRecord`s of the runs going now (their process holds the folder's lock), newest
        first: near `output_dir`, in the working directory and in the run index."""
        return []

    def attach(self, output_dir: str, *, on_event: Callable[[Event], None], stop_event: threading.Event,
               leave_event: threading.Event) -> Any:
        """Replay a live run's events, then follow them until it ends (its Finished) or `leave_event` is set
        (None). `stop_event` asks the run to stop (finish its step, save the adapter and a checkpoint)."""
        raise NotImplementedError

    def evaluate(self, adapter: str, dataset_path: str, limit: int | None = None,
                 on_progress: Callable[[str], None] | None = None, *, skip_invalid: bool = False) -> list:
        """`core.adapter.evaluate.EvalResult`s, base model then adapter, on the adapter run's held-out rows, as
        `genaptitude-trainer evaluate --compare` picks them. `on_progress(text)` first says which rows, then each
        phase; an exception it raises stops the evaluation."""
        raise NotImplementedError

    def chat_load(self, adapter: str) -> str:
        """Load the base model and `adapter` once, kept for `chat`; returns the base model's name."""
        raise NotImplementedError

    def chat(self, adapter: str, prompt: str) -> tuple[str, str]:
        """(base answer, adapter answer) to one prompt, from the same loaded weights (adapter off, then on)."""
        raise NotImplementedError

    def chat_prompts(self, adapter: str) -> str:
        """How chat sends a prompt to the loaded adapter, in words (core.data.layout.chat_words); "" when unknown."""
        return ""

    def chat_close(self) -> None:
        """Forget the model `chat_load` kept (frees its memory before the next run)."""

    def suggest(self, report: Any) -> Any:
        from core.suggest import suggest

        return suggest(report)

    def format_label(self, fmt: str) -> str:
        from core.data.formats import FORMAT_LABELS

        return FORMAT_LABELS.get(fmt, fmt)


class RealEngine(Engine):
    """The engine in `core/`, imported lazily; tokenizers are loaded once per model and kept."""

    def __init__(self) -> None:
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._chat: Any | None = None  # a core.adapter.evaluate.Chat: the model stays loaded between prompts
        self._chat_lock = threading.Lock()
        self._pinned = False

    def probe(self) -> Any:
        from core import hardware

        return hardware.probe()

    def sample(self) -> list:
        from core import hardware

        return hardware.sample()

    def read_dataset(self, path: str, skip_invalid: bool = False) -> Any:
        from core.data.dataset import read_dataset

        return read_dataset(path, skip_invalid=skip_invalid)

    def _tokenizer(self, model: str) -> Any:
        with self._lock:  # preview and length stats may ask for the same model at once
            if model not in self._tokenizers:
                from core.models import load_tokenizer

                self._tokenizers[model] = load_tokenizer(model)
            return self._tokenizers[model]

    def preview(self, model: str, example: Any, max_length: int, truncation: str = "keep-answer",
                instruction_turn: str = "system") -> Any:
        from core.data.layout import lay_out
        from core.data.render import render_example

        example = lay_out([example], self.instruction_turn(model, instruction_turn))[0]
        return render_example(self._tokenizer(model), example, max_length, truncation)

    def length_stats(self, model: str, examples: list, max_length: int, instruction_turn: str = "system") -> Any:
        from core.data.layout import lay_out
        from core.data.render import length_stats

        examples = lay_out(examples, self.instruction_turn(model, instruction_turn))
        return length_stats(self._tokenizer(model), examples, max_length)

    def instruction_turn(self, model: str, setting: str) -> str:
        from core.data.layout import instruction_turn_for

        return instruction_turn_for(self._tokenizer(model), setting)

    def estimate(self, config: TrainConfig, usable_gib: float | None = None) -> Any:
        from core.estimate import estimate_vram

        return estimate_vram(config, usable_gib=usable_gib)

    def train(self, config: TrainConfig, dataset_path: str, output_dir: str, *,
              on_event: Callable[[Event], None], stop_event: threading.Event, **kw: Any) -> Path:
        from core.train.engine import train

        kw.pop("leave_event", None)  # in this process the run cannot be left: it ends with the app
        return train(config, dataset_path, output_dir, on_event=on_event, stop_event=stop_event, **kw)

    def _one_gpu(self) -> None:
        """evaluate and chat run in this process: give it one GPU, the freest (core/gpus.py), before its first
        CUDA call. CUDA reads the choice once, so later evaluations and chats stay on that GPU."""
        if not self._pinned:
            from core import gpus

            gpus.pin(gpus.plan(1))
            self._pinned = True

    def live_runs(self, output_dir: str) -> list:
        from core.runs.history import find_runs

        return [r for r in find_runs(output_dir, live_only=True).runs if r.state == "running"]

    def attach(self, output_dir: str, *, on_event: Callable[[Event], None], stop_event: threading.Event,
               leave_event: threading.Event) -> Any:
        from core.errors import TrainerError
        from core.events import Failed
        from core.runs.workers import follow

        told: list[Failed] = []

        def forward(event: Event) -> None:
            if isinstance(event, Failed):
                told.append(event)
            on_event(event)

        try:
            return follow(output_dir, forward, stop_event=stop_event, leave_event=leave_event)
        except TrainerError as err:
            if not told:
                on_event(Failed(err.message, err.hint))
            raise

    # In this process, in the calling thread: nothing trains meanwhile, and the chat keeps its model loaded.
    def evaluate(self, adapter: str, dataset_path: str, limit: int | None = None,
                 on_progress: Callable[[str], None] | None = None, *, skip_invalid: bool = False) -> list:
        self._one_gpu()
        from core.adapter.evaluate import evaluate, held_out

        say = on_progress or (lambda text: None)
        rows = held_out(dataset_path, adapter, limit=limit, skip_invalid=skip_invalid)
        say(f"{rows.describe(dataset_path)}, base model {rows.model}")
        try:
            return evaluate(rows.model, adapter, rows.examples, compare=True, on_progress=say)
        finally:
            _free_memory()  # the models are gone with this call: give their GPU memory back for the next run

    def chat_load(self, adapter: str) -> str:
        self._one_gpu()
        with self._chat_lock:
            if self._chat is None or self._chat.adapter != str(adapter):
                self._chat = None  # the old model goes before the new one loads
                from core.adapter.evaluate import Chat

                self._chat = Chat(str(adapter))
            return self._chat.model

    def chat(self, adapter: str, prompt: str) -> tuple[str, str]:
        self.chat_load(adapter)
        with self._chat_lock:
            return self._chat.ask(prompt)

    def chat_prompts(self, adapter: str) -> str:
        from core.data.layout import chat_words

        with self._chat_lock:
            if self._chat is None or self._chat.adapter != str(adapter):
                return ""
            return chat_words(self._chat.instruction, self._chat.instruction_turn)

    def chat_close(self) -> None:
        with self._chat_lock:
            if self._chat is None:
                return
            self._chat = None
        _free_memory()


def _free_memory() -> None:
    """Collect dropped models and return torch's cached GPU blocks (the next run is another process)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class ProcessEngine(RealEngine):
    """RealEngine whose training runs as a detached process (`python -m core train --detached`), followed through
    its run folder's events.jsonl (core/runs/workers.py).

    The run is a session of its own, not a child tied to the app's terminal: closing the terminal, SIGHUP or
    kill -9 of the app leave it training, and any app (or `genaptitude-trainer attach`) can follow it later. It has
    its own interpreter, so the UI costs it nothing (in-process, the UI cost ~5% of tokens/s on an H100), and a
    crash in CUDA or a native library ends the run, not the app. Stop sends SIGINT, which the CLI turns into
    "finish this step, save the adapter and a checkpoint".
    `evaluate` and `chat` are RealEngine's: they run in this process, after a run, and keep nothing running.
    """

    def train(self, config: TrainConfig, dataset_path: str, output_dir: str, *,
              on_event: Callable[[Event], None], stop_event: threading.Event,
              leave_event: threading.Event | None = None, overwrite: bool = False, resume: bool = False,
              skip_invalid: bool = False) -> Path | None:
        from core.errors import TrainerError
        from core.events import Failed
        from core.gpus import user_env
        from core.runs.workers import child_env, follow, start_run

        told: list[Failed] = []

        def forward(event: Event) -> None:
            if isinstance(event, Failed):
                told.append(event)
            on_event(event)

        env = child_env()
        for name, value in user_env().items():  # the run process chooses its GPUs afresh, as the user left them
            env.pop(name, None) if value is None else env.update({name: value})
        launch = start_run(config, dataset_path, output_dir, overwrite=overwrite, resume=resume,
                           skip_invalid=skip_invalid, env=env)
        try:
            done = follow(output_dir, forward, stop_event=stop_event, leave_event=leave_event, launch=launch)
        except TrainerError as err:
            if not told:  # the process died without saying why (a crash, a kill): say what is known
                on_event(Failed(err.message, err.hint))
            raise
        if done is None:
            return None  # left running: it is not this app's child to wait for any more
        try:
            launch.proc.wait(timeout=30)  # it only releases its lock and exits now: no zombie left behind
        except subprocess.TimeoutExpired:
            pass
        return Path(done.output_dir)
