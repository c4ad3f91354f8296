"""Messages that thread workers post back to the UI (post_message is thread-safe; widgets are not).

Dataclass messages: Textual's `Message.__post_init__` sets up the message after the dataclass `__init__`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from core.events import Event, MemorySample


@dataclass
class EngineEvent(Message):
    """One event from a training run, as sent by `core.train.engine.train`."""

    event: Event

    def can_replace(self, message: Message) -> bool:
        # A queued memory sample may be superseded by the next one; loss points never are.
        return (isinstance(self.event, MemorySample) and isinstance(message, EngineEvent)
                and isinstance(message.event, MemorySample))


@dataclass
class HardwareProbed(Message):
    report: Any  # core.hardware.HardwareReport
    suggestion: Any  # core.suggest.Suggestion


@dataclass
class GpuSampled(Message):
    samples: list  # core.hardware.GpuSample

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSampled)


@dataclass
class DatasetLoaded(Message):
    report: Any | None  # core.data.dataset.DatasetReport, or None when it failed
    error: Exception | None = None
    skip_invalid: bool = False


@dataclass
class LengthStatsReady(Message):
    key: tuple  # (dataset sha, model, max_length, instruction_turn setting) the stats belong to
    stats: Any | None  # core.data.render.LengthStats
    error: str = ""
    instruction_turn: str = ""  # the prompt layout that setting gives with this model (core.data.layout)


@dataclass
class PreviewReady(Message):
    rendered: Any | None  # core.data.render.RenderedExample
    error: str = ""


@dataclass
class ConfigChanged(Message):
    """The preset panel's settings changed; `config` is None while a value is invalid."""

    config: Any | None  # core.presets.TrainConfig


@dataclass
class EvalProgress(Message):
    """What the evaluation is doing; the first one says which rows it scores."""

    text: str


@dataclass
class EvalDone(Message):
    results: list  # core.adapter.evaluate.EvalResult: base, then adapter
    error: str = ""


@dataclass
class ChatReady(Message):
    model: str
    error: str = ""


@dataclass
class ChatAnswered(Message):
    prompt: str
    base: str = ""
    adapter: str = ""
    error: str = ""


@dataclass
class ExportProgress(Message):
    """A GGUF export's progress: a core.events event (Phase, LogLine, TensorWritten) from its worker thread."""

    event: Any


@dataclass
class ExportDone(Message):
    """An export (zip, install or GGUF) ended: what to tell the user, line by line, or what went wrong."""

    title: str
    lines: list[str]
    error: str = ""


def error_text(exc: BaseException, *, limit: int = 20, doing: str = "") -> str:
    """A worker's failure as a person reads it: the message, problems (up to `limit`) and hint of a TrainerError.
    Anything else is a bug: its type and text after `doing`, and where its traceback was kept (the app's screen has
    no stderr a user could read)."""
    from core.errors import TrainerError

    if isinstance(exc, TrainerError):
        return exc.render(limit)
    return f"{doing}{type(exc).__name__}: {exc}\n" + keep_trace(exc)


def keep_trace(exc: BaseException) -> str:
    """Append a bug's traceback to the app's error log (once, however many views show the error); return the
    sentence that says where it is."""
    import traceback

    from core.runs.history import state_home

    said = getattr(exc, "_trainer_kept", None)
    if said:
        return said
    log = state_home() / "app-errors.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)) + "\n")
    except OSError:
        said = "a bug in the trainer (its traceback could not be written down)"
    else:
        said = f"a bug in the trainer: its traceback is in {log}"
    exc._trainer_kept = said  # type: ignore[attr-defined]
    return said
