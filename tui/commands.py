"""Command palette entries: "Use preset X" for every preset, and every action of the app."""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

from core.presets import PRESETS

ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Start training", "train", "train with the chosen preset and values (t)"),
    ("Stop training and save", "stop", "save the adapter and a resumable checkpoint (s)"),
    ("Reload dataset", "reload_dataset", "read the dataset file again (r)"),
    ("Skip invalid dataset rows", "skip_invalid", "train on the valid rows only (k)"),
    ("Evaluate the adapter", "evaluate", "base model vs adapter on the run's held-out rows (e)"),
    ("Chat with the adapter", "chat", "try any prompt on the base model and the adapter, side by side (c)"),
    ("Export the adapter", "export", "write <adapter>.zip, or install it for GenAptitude (x)"),
    ("Show past runs", "history", "list earlier runs and re-plot their loss and memory curves (h)"),
    ("Show overview", "show_tab('overview')", "hardware, suggested preset, data sample (1)"),
    ("Show presets", "show_tab('preset')", "preset and values (2)"),
    ("Show dataset", "show_tab('dataset')", "format, rows, samples (3)"),
    ("Show training", "show_tab('training')", "loss, memory, log (4)"),
    ("Quit", "quit", "asks first when a run is going (q)"),
)


class TrainerCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        app = self.app
        for name, preset in PRESETS.items():
            yield f"Use preset {name}", partial(app.use_preset, name), preset.summary  # type: ignore[attr-defined]
        for title, action, help_text in ACTIONS:
            yield title, partial(app.run_action, action), help_text

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
