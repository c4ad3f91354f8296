"""The app's keys (`KEYS`, the `TrainerApp.BINDINGS`) and the command palette, through Textual's system commands:
"Use preset X" for every preset, and every key of the app that is a `Command` (a Binding with a palette title; its
tooltip is the palette's help and the footer's)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Iterable

from textual.app import SystemCommand
from textual.binding import Binding

from core.presets import PRESETS


@dataclass(frozen=True)
class Command(Binding):
    """A key binding that the command palette offers too, as `title`."""

    title: str = ""


TABS = Binding.Group("tabs ", compact=True)
KEYS = [  # the app's keys; a Command is the palette's (ctrl+p) too, as its title, with its tooltip
    Command("1", "show_tab('overview')", "Overview", group=TABS, title="Show overview",
            tooltip="hardware, suggested preset, data sample"),
    Command("2", "show_tab('preset')", "Preset", group=TABS, title="Show presets", tooltip="preset and values"),
    Command("3", "show_tab('dataset')", "Dataset", group=TABS, title="Show dataset",
            tooltip="format, rows, samples"),
    Command("4", "show_tab('training')", "Training", group=TABS, title="Show training",
            tooltip="loss, memory, log"),
    Command("t", "train", "Train", title="Start training", tooltip="train with the chosen preset and values"),
    Command("s", "stop", "Stop+save", title="Stop training and save",
            tooltip="save the adapter and a resumable checkpoint"),
    Binding("p", "preview", "Preview"),
    Command("r", "reload_dataset", "Reload", title="Reload dataset", tooltip="read the dataset file again"),
    Command("k", "skip_invalid", "Skip bad rows", title="Skip invalid dataset rows",
            tooltip="train on the valid rows only"),
    Command("e", "evaluate", "Evaluate", title="Evaluate the adapter",
            tooltip="base model vs adapter on the run's held-out rows"),
    Command("c", "chat", "Chat", title="Chat with the adapter",
            tooltip="try any prompt on the base model and the adapter, side by side"),
    Command("x", "export", "Export", title="Export the adapter",
            tooltip="write <adapter>.zip, install it, or write a GGUF for RAISE"),
    Command("h", "history", "Runs", title="Show past runs",
            tooltip="list earlier runs and re-plot their loss and memory curves"),
    Command("q", "quit", "Quit", title="Quit", tooltip="asks first when a run is going"),
]


def palette(app: Any, inherited: Iterable[SystemCommand]) -> Iterable[SystemCommand]:
    """Textual's own commands (theme, keys, screenshot…), then the presets, then the app's `Command` keys."""
    ours = [b for b in app.BINDINGS if isinstance(b, Command)]
    titles = {b.title for b in ours}
    yield from (c for c in inherited if c.title not in titles)  # Textual's Quit gives way to ours, which asks first
    for name, preset in PRESETS.items():
        yield SystemCommand(f"Use preset {name}", preset.summary, partial(app.use_preset, name))
    for b in ours:
        yield SystemCommand(b.title, f"{b.tooltip} ({b.key})", partial(app.run_action, b.action))
