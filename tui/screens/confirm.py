"""Small keyboard dialogs: yes/no, and a choice between a few keyed answers."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

DIALOG_CSS = """
{name} { align: center middle; }
{name} > Vertical { width: 72; max-width: 100%; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
{name} .title { text-style: bold; margin-bottom: 1; }
{name} .keys { margin-top: 1; color: $text-muted; }
"""


class ChoiceScreen(ModalScreen[str | None]):
    """Asks a question; each answer has a key. Escape answers None."""

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "ChoiceScreen")
    BINDINGS = [Binding("escape", "choose(None)", "Cancel")]

    def __init__(self, title: str, body: str, choices: dict[str, tuple[str, str]]) -> None:
        """`choices` maps a key to (answer returned, label shown)."""
        super().__init__()
        self.title_text, self.body, self.choices = title, body, choices
        for key, (answer, label) in choices.items():
            self._bindings.bind(key, f"choose({answer!r})", label)

    def compose(self) -> ComposeResult:
        keys = "\n".join(f"{key}  {label}" for key, (_, label) in self.choices.items()) + "\nesc  cancel"
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Static(Text(self.body))
            yield Static(Text(keys), classes="keys")

    def action_choose(self, answer: str | None) -> None:
        self.dismiss(answer)


class ConfirmScreen(ChoiceScreen):
    """Yes (y) or no (n / escape); dismisses with a bool."""

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "ConfirmScreen")

    def __init__(self, title: str, body: str, yes: str = "yes", no: str = "no") -> None:
        super().__init__(title, body, {"y": ("yes", yes), "n": ("no", no)})

    def action_choose(self, answer: str | None) -> None:
        self.dismiss(answer == "yes")  # type: ignore[arg-type]
