"""The command palette, through Textual's system commands: "Use preset X" for every preset, and every key of the
app that is a `Command` (a Binding with a palette title; its tooltip is the palette's help and the footer's)."""
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


def palette(app: Any, inherited: Iterable[SystemCommand]) -> Iterable[SystemCommand]:
    """Textual's own commands (theme, keys, screenshot…), then the presets, then the app's `Command` keys."""
    ours = [b for b in app.BINDINGS if isinstance(b, Command)]
    titles = {b.title for b in ours}
    yield from (c for c in inherited if c.title not in titles)  # Textual's Quit gives way to ours, which asks first
    for name, preset in PRESETS.items():
        yield SystemCommand(f"Use preset {name}", preset.summary, partial(app.use_preset, name))
    for b in ours:
        yield SystemCommand(b.title, f"{b.tooltip} ({b.key})", partial(app.run_action, b.action))
