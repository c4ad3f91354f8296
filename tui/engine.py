"""The seam between the UI and `core/`: everything slow or heavy goes through an `Engine`.

`RealEngine` imports the core modules inside its methods, so importing the app and painting the first screen
never loads torch or transformers. Tests pass a scripted fake with the same methods.
All methods except `suggest`, `format_label` and `estimate` may be slow: call them from thread workers.
"""
from __future__ import annotations

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
        """A `core.dataset.DatasetReport`; raises `DatasetError` naming the bad lines."""
        raise NotImplementedError

    def preview(self, model: str, example: Any, max_length: int) -> Any:
        """A `core.render.RenderedExample`: the exact text the model sees and which tokens carry the loss."""
        raise NotImplementedError

    def length_stats(self, model: str, examples: list, max_length: int) -> Any:
        """A `core.render.LengthStats` over the examples' token lengths."""
        raise NotImplementedError

    def estimate(self, config: TrainConfig) -> Any:
        """A `core.estimate.VramEstimate` (cheap, pure Python)."""
        raise NotImplementedError

    def train(self, config: TrainConfig, dataset_path: str, output_dir: str, *,
              on_event: Callable[[Event], None], stop_event: threading.Event, **kw: Any) -> Path:
        """Run a whole training in the calling thread, sending events to `on_event`."""
        raise NotImplementedError

    def suggest(self, report: Any) -> Any:
        from core.presets import suggest

        return suggest(report)

    def format_label(self, fmt: str) -> str:
        from core.dataset import FORMAT_LABELS

        return FORMAT_LABELS.get(fmt, fmt)


class RealEngine(Engine):
    """The engine in `core/`, imported lazily; tokenizers are loaded once per model and kept."""

    def __init__(self) -> None:
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def probe(self) -> Any:
        from core import hardware

        return hardware.probe()

    def sample(self) -> list:
        from core import hardware

        return hardware.sample()

    def read_dataset(self, path: str, skip_invalid: bool = False) -> Any:
        from core.dataset import read_dataset

        return read_dataset(path, skip_invalid=skip_invalid)

    def _tokenizer(self, model: str) -> Any:
        with self._lock:  # preview and length stats may ask for the same model at once
            if model not in self._tokenizers:
                from core.render import load_tokenizer

                self._tokenizers[model] = load_tokenizer(model)
            return self._tokenizers[model]

    def preview(self, model: str, example: Any, max_length: int) -> Any:
        from core.render import render_example

        return render_example(self._tokenizer(model), example, max_length)

    def length_stats(self, model: str, examples: list, max_length: int) -> Any:
        from core.render import length_stats

        return length_stats(self._tokenizer(model), examples, max_length)

    def estimate(self, config: TrainConfig) -> Any:
        from core.estimate import estimate_vram

        return estimate_vram(config)

    def train(self, config: TrainConfig, dataset_path: str, output_dir: str, *,
              on_event: Callable[[Event], None], stop_event: threading.Event, **kw: Any) -> Path:
        from core.engine import train

        return train(config, dataset_path, output_dir, on_event=on_event, stop_event=stop_event, **kw)
