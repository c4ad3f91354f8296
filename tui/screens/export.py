"""Export after a run: the choice (zip, install or GGUF for RAISE), the install's two questions (LoRA root, optional
.env) and the GGUF's (type, optional RAISE .env)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from .confirm import DIALOG_CSS, ChoiceScreen


def zip_path(adapter: str) -> str:
    """`<adapter>.zip`, next to the adapter folder."""
    folder = Path(adapter)
    return str(folder.with_name(folder.name + ".zip"))


def export_choice(adapter: str) -> ChoiceScreen:
    return ChoiceScreen("Export the adapter", adapter, {
        "z": ("zip", f"zip: write {zip_path(adapter)}"),
        "i": ("install", "install: copy it into GenAptitude's LoRA folder (and its .env)"),
        "g": ("gguf", "GGUF for RAISE: the model merged into one file (llama.cpp, Ollama)"),
    })


class GgufScreen(ModalScreen[tuple[str, str | None] | None]):
    """The GGUF's type (q8_0 filled in) and an optional RAISE .env to copy it into that RAISE's models folder.

    Dismisses with (type, env_file or None), or None on escape.
    """

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "GgufScreen") + """
    GgufScreen Input { margin-bottom: 1; }
    GgufScreen .label { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, adapter: str, env_file: str = "") -> None:
        from core.adapter.gguf_export import DEFAULT_TYPE, TYPES  # names only: no torch

        super().__init__()
        self.adapter, self.env_file, self.types, self.default = adapter, env_file, tuple(TYPES), DEFAULT_TYPE

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("GGUF for RAISE (and llama.cpp, Ollama)"), classes="title")
            yield Static(Text(f"merges {Path(self.adapter).name} into its base and writes <adapter>-<type>.gguf and "
                              "its .tokenizer.json beside the adapter"))
            yield Static(f"type: {', '.join(self.types)}", classes="label")
            yield Input(self.default, id="gguf-type", compact=True)
            yield Static("RAISE .env (copies both files into its models folder; Qwen2 bases only); empty: leave "
                         "RAISE alone", classes="label")
            yield Input(self.env_file, placeholder="e.g. ~/raise/.env", id="raise-env", compact=True)
            yield Static(Text("enter  write\ntab    next field\nesc    cancel"), classes="keys")

    def on_mount(self) -> None:
        self.query_one("#gguf-type", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_write()

    def action_write(self) -> None:
        qtype = self.query_one("#gguf-type", Input).value.strip().lower()
        if qtype not in self.types:
            self.notify(f"the type is one of {', '.join(self.types)}", severity="error")
            self.query_one("#gguf-type", Input).focus()
            return
        env = self.query_one("#raise-env", Input).value.strip()
        self.dismiss((qtype, env or None))

    def action_cancel(self) -> None:
        self.dismiss(None)


class InstallScreen(ModalScreen[tuple[str, str | None] | None]):
    """Where to install: the LoRA root (a default is filled in) and an optional .env to point at it.

    Dismisses with (lora_root, env_file or None), or None on escape.
    """

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "InstallScreen") + """
    InstallScreen Input { margin-bottom: 1; }
    InstallScreen .label { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, adapter: str, lora_root: str | None = None, env_file: str = "") -> None:
        from core.adapter.export import DEFAULT_LORA_ROOT  # zipfile, shutil…: only when the dialog opens

        super().__init__()
        self.adapter, self.lora_root, self.env_file = adapter, lora_root or DEFAULT_LORA_ROOT, env_file

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Install the adapter for GenAptitude"), classes="title")
            yield Static(Text(f"copies {Path(self.adapter).name} (without checkpoints) into the LoRA folder"))
            yield Static("LoRA folder", classes="label")
            yield Input(self.lora_root, id="lora-root", compact=True)
            yield Static("GenAptitude .env to set RAISE_LORA_PATH in (a backup is kept); empty: leave it alone",
                         classes="label")
            yield Input(self.env_file, placeholder="e.g. ~/genaptitude-llm/.env", id="env-file", compact=True)
            yield Static(Text("enter  install\ntab    next field\nesc    cancel"), classes="keys")

    def on_mount(self) -> None:
        self.query_one("#lora-root", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_install()

    def action_install(self) -> None:
        root = self.query_one("#lora-root", Input).value.strip()
        if not root:
            self.notify("give the LoRA folder", severity="error")
            self.query_one("#lora-root", Input).focus()
            return
        env = self.query_one("#env-file", Input).value.strip()
        self.dismiss((root, env or None))

    def action_cancel(self) -> None:
        self.dismiss(None)
