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
    """One event from a training run, as sent by `core.engine.train`."""

    event: Event

    def can_replace(self, message: Message) -> bool:
        # A queued memory sample may be superseded by the next one; loss points never are.
        return (isinstance(self.event, MemorySample) and isinstance(message, EngineEvent)
                and isinstance(message.event, MemorySample))


@dataclass
class HardwareProbed(Message):
    report: Any  # core.hardware.HardwareReport
    suggestion: Any  # core.presets.Suggestion


@dataclass
class GpuSampled(Message):
    samples: list  # core.hardware.GpuSample

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSampled)


@dataclass
class DatasetLoaded(Message):
    report: Any | None  # core.dataset.DatasetReport, or None when it failed
    error: Exception | None = None
    skip_invalid: bool = False


@dataclass
class LengthStatsReady(Message):
    key: tuple  # (dataset sha, model, max_length) the stats belong to
    stats: Any | None  # core.render.LengthStats
    error: str = ""


@dataclass
class PreviewReady(Message):
    rendered: Any | None  # core.render.RenderedExample
    error: str = ""


@dataclass
class ConfigChanged(Message):
    """The preset panel's settings changed; `config` is None while a value is invalid."""

    config: Any | None  # core.presets.TrainConfig
