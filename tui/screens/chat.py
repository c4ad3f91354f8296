"""Try any prompt on the base model and on the adapter: both answers side by side, the session's prompts kept."""
from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from ..messages import ChatAnswered, ChatReady, error_text


def exchange_view(number: int, prompt: str, base: str, adapter: str) -> Group:
    grid = Table.grid(expand=True, padding=(0, 2, 0, 0))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(Text("base model", style="bold"), Text("adapter", style="bold green"))
    grid.add_row(Text(base or "(empty answer)", style="" if base else "dim"),
                 Text(adapter or "(empty answer)", style="" if adapter else "dim"))
    return Group(Text.assemble((f"{number} › ", "bold"), (prompt, "bold")), grid)


class PromptInput(Input):
    """An Input whose Enter is shown in the footer, with ↑/↓ going through this session's earlier prompts."""

    BINDINGS = [Binding("enter", "submit", "Send"), Binding("up", "recall(-1)", "Earlier prompt"),
                Binding("down", "recall(1)", "Later", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self._index = 0

    def remember(self, prompt: str) -> None:
        self.history.append(prompt)
        self._index = len(self.history)

    def action_recall(self, step: int) -> None:
        if not self.history:
            return
        self._index = max(0, min(len(self.history), self._index + step))
        self.value = self.history[self._index] if self._index < len(self.history) else ""
        self.cursor_position = len(self.value)


class ChatScreen(ModalScreen[None]):
    """Pushed by `c` after a run. The model loads once in a thread worker and stays loaded until the screen closes."""

    DEFAULT_CSS = """
    ChatScreen { align: center middle; }
    ChatScreen > Vertical { width: 100%; height: 1fr; border: thick $primary; background: $surface; padding: 0 1; }
    ChatScreen #chat-status { height: auto; }
    ChatScreen #chat-status.-failed { color: $error; }
    ChatScreen #chat-log { height: 1fr; }
    ChatScreen #chat-log > Static { margin-bottom: 1; }
    ChatScreen #chat-input { margin-top: 0; }
    """
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, engine: Any, adapter: str) -> None:
        super().__init__()
        self.engine, self.adapter = engine, adapter
        self.model = ""
        self.state = "loading"  # loading, ready, answering, failed (the load failed)
        self.exchanges: list[tuple[str, str, str]] = []
        self.prompts = ""  # how a prompt is sent (core.data.layout.chat_words), once the model is loaded

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "chat: base model vs adapter"
            yield Static(Text("loading the base model and the adapter… (once for this chat)", style="bold"),
                         id="chat-status")
            with VerticalScroll(id="chat-log"):
                yield Static(Text("Type a prompt below and press Enter: the base model and the adapter both answer "
                                  "it, greedy, from the same weights (adapter off, then on).", style="dim"),
                             id="chat-empty")
            yield PromptInput(placeholder="a prompt for both models", id="chat-input")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
        self._load()

    def _status(self, text: Text, failed: bool = False) -> None:
        status = self.query_one("#chat-status", Static)
        status.update(text)
        status.set_class(failed, "-failed")

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat")
    def _load(self) -> None:
        try:
            model = self.engine.chat_load(self.adapter)
            self.prompts = self.engine.chat_prompts(self.adapter)
        except Exception as exc:  # noqa: BLE001 - shown; error_text keeps a bug's traceback
            self.post_message(ChatReady("", error_text(exc)))
        else:
            self.post_message(ChatReady(model))

    def on_chat_ready(self, message: ChatReady) -> None:
        if message.error:
            self.state = "failed"
            self._status(Text.assemble(("✘ cannot load the model: ", "bold"), message.error,
                                       ("\nesc closes; Enter tries to load it again", "dim")), failed=True)
            return
        self.state, self.model = "ready", message.model
        self._status(self._ready_text())

    def _ready_text(self) -> Text:
        text = Text.assemble(("ready: ", "bold green"), f"base {self.model} · adapter {self.adapter}")
        if self.prompts:  # laid out as the run laid out its rows (core.data.layout)
            text.append(f"\n{self.prompts}", style="dim")
        return text

    @on(Input.Submitted, "#chat-input")
    def _send(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if self.state == "failed":
            self.state = "loading"
            self._status(Text("loading the base model and the adapter…", style="bold"))
            self._load()
            return
        if not prompt:
            return
        if self.state != "ready":
            self.notify("wait for the answers (or the model) first", severity="warning")
            return
        self.state = "answering"
        field = self.query_one(PromptInput)
        field.remember(prompt)
        field.value = ""
        self._status(Text.assemble(("answering: ", "bold"), prompt, (" (base model, then the adapter)…", "dim")))
        self._ask(prompt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat")
    def _ask(self, prompt: str) -> None:
        try:
            base, adapter = self.engine.chat(self.adapter, prompt)
        except Exception as exc:  # noqa: BLE001 - shown; error_text keeps a bug's traceback
            self.post_message(ChatAnswered(prompt, error=error_text(exc)))
        else:
            self.post_message(ChatAnswered(prompt, base, adapter))

    async def on_chat_answered(self, message: ChatAnswered) -> None:
        self.state = "ready"
        if message.error:
            self._status(Text.assemble(("✘ no answer: ", "bold"), message.error), failed=True)
            return
        self._status(self._ready_text())
        self.exchanges.append((message.prompt, message.base, message.adapter))
        log = self.query_one("#chat-log", VerticalScroll)
        await self.query("#chat-empty").remove()
        await log.mount(Static(exchange_view(len(self.exchanges), message.prompt, message.base, message.adapter)))
        log.scroll_end(animate=False)

    def action_close(self) -> None:
        self.app.run_worker(self.engine.chat_close, thread=True, exit_on_error=False, group="chat-close")
        self.dismiss(None)
