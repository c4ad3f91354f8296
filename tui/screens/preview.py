"""One sample rendered exactly as the model sees it, with the tokens that carry the loss highlighted."""
from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..messages import PreviewReady, error_text

TRAINED = "bold reverse green"  # reverse keeps it visible on terminals without colour
CONTEXT = ""


def legend() -> Text:
    return Text.assemble(("trained", TRAINED), " tokens carry the loss (the answer and its end-of-turn token)   ",
                         ("context", "dim"), " is seen but not learned")


CUT = "bold reverse yellow"  # the …[N tokens cut]… marker where keep-answer cut a long input
_CUT_MARK = re.compile(r"…\[[0-9,]+ tokens cut\]…")


def rendered_text(rendered: Any) -> Text:
    text = Text()
    for piece, trained in rendered.segments:
        text.append(piece, style=TRAINED if trained else CONTEXT)
    if getattr(rendered, "cut_tokens", 0):
        text.highlight_regex(_CUT_MARK, CUT)
    return text


def header_text(rendered: Any, line: int, model: str, max_length: int, truncation: str = "keep-answer") -> Text:
    text = Text.assemble((f"line {line}", "bold"), f" · {model} · {rendered.n_tokens} tokens, ",
                         (f"{rendered.n_trained} trained", "bold green"))
    outcome = getattr(rendered, "outcome", "right" if rendered.truncated else "fits")
    before, cut = getattr(rendered, "n_before", 0), getattr(rendered, "cut_tokens", 0)
    lost = getattr(rendered, "answer_lost", 0)
    if outcome in ("cut", "answer-cut") and cut:
        turns = getattr(rendered, "dropped_turns", 0)
        text.append(f"\n✂ {before:,} tokens as written, longer than max length {max_length:,}: {cut:,} tokens of the "
                    "input cut in its middle (see …[N tokens cut]… below)"
                    + (f", {turns} earlier turn(s) left out" if turns else "")
                    + (", the answer is whole" if outcome == "cut" else ""), style="bold yellow")
    if outcome == "answer-cut":
        text.append(f"\n⚠ the answer alone is longer than max length {max_length:,}: its last {lost:,} tokens are cut",
                    style="bold yellow")
    elif outcome == "right":
        text.append(f"\n⚠ cut from the right at max length {max_length:,} (--truncation right): {lost:,} answer "
                    "tokens are not seen by the model", style="bold yellow")
    if outcome == "dropped" or rendered.n_trained == 0:
        why = "cut from the right, no answer token is left" if truncation == "right" else "--truncation drop"
        text.append(f"\n⚠ this row is left out of training: {before:,} tokens as written, longer than max length "
                    f"{max_length:,} ({why}; --truncation keep-answer would keep it, its input cut in the middle)"
                    if outcome == "dropped" else "\n⚠ no token is trained in this row", style="bold red")
    return text


class PreviewScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    PreviewScreen { align: center middle; }
    PreviewScreen > Vertical { width: 100%; height: 100%; border: thick $primary; background: $surface; padding: 0 1; }
    PreviewScreen #preview-head { height: auto; }
    PreviewScreen #preview-legend { height: auto; margin-bottom: 1; }
    PreviewScreen #preview-body { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, engine: Any, example: Any, model: str, max_length: int,
                 truncation: str = "keep-answer", instruction_turn: str = "system") -> None:
        super().__init__()
        self.engine, self.example, self.model, self.max_length = engine, example, model, max_length
        self.truncation, self.instruction_turn = truncation, instruction_turn
        self.rendered: Any | None = None
        self.body: Text | None = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "sample as the model sees it"
            box.border_subtitle = "esc close"
            yield Static(Text(f"line {self.example.line} · rendering with {self.model}'s chat template…",
                              style="dim"), id="preview-head")
            yield Static(legend(), id="preview-legend")
            with VerticalScroll(id="preview-body"):
                yield Static("", id="preview-text")

    def on_mount(self) -> None:
        self.query_one("#preview-body").focus()
        self._render_sample()

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview")
    def _render_sample(self) -> None:
        try:
            rendered = self.engine.preview(self.model, self.example, self.max_length, self.truncation,
                                           self.instruction_turn)
        except Exception as exc:  # noqa: BLE001 - shown on the screen (a bug with where its traceback is kept)
            self.post_message(PreviewReady(None, error_text(exc)))
        else:
            self.post_message(PreviewReady(rendered))

    def on_preview_ready(self, message: PreviewReady) -> None:
        head = self.query_one("#preview-head", Static)
        if message.rendered is None:
            head.update(Text(f"line {self.example.line}: cannot render this sample\n{message.error}", style="red"))
            return
        self.rendered = message.rendered
        head.update(header_text(message.rendered, self.example.line, self.model, self.max_length, self.truncation))
        self.body = rendered_text(message.rendered)
        self.query_one("#preview-text", Static).update(self.body)

    async def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(None)
