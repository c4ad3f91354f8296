"""Did it learn: the base model and the adapter answer the run's held-out rows, side by side, with their scores."""
from __future__ import annotations

import textwrap
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from core.data.examples import flat
from core.events import loss_text

from ..messages import EvalDone, EvalProgress, error_text

OK, MISS = ("✓", "bold green"), ("✗", "bold red")


class Cancelled(Exception):
    """Raised from the progress callback when the screen was closed: the evaluation stops at its next step."""


def scores_table(results: list) -> Table:
    """One column per model: exact match, similarity, eval loss."""
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    table.add_column("", style="bold")
    for r in results:
        table.add_column(r.label, min_width=12)
    n = [len(r.rows) for r in results]
    table.add_row("exact match", *(f"{sum(x.exact for x in r.rows)}/{k} ({r.exact_match:.0%})"
                                   for r, k in zip(results, n)))
    table.add_row("similarity", *(f"{r.similarity:.2f}" for r in results))
    table.add_row("eval loss", *(loss_text(r.eval_loss) for r in results))
    return table


def rows_view(results: list) -> Group:
    """Each held-out row: its prompt and reference, then every model's answer in its own column, ✓ or ✗."""
    parts: list[Any] = []
    for i, row in enumerate(results[0].rows if results else []):
        prompt = textwrap.shorten(flat(row.prompt), 150, placeholder=" …")
        parts.append(Text.assemble((f"line {row.line}  ", "bold"), prompt))
        parts.append(Text.assemble(("reference  ", "dim"), row.reference))
        grid = Table.grid(expand=True, padding=(0, 2, 0, 0))
        for _ in results:
            grid.add_column(ratio=1)
        grid.add_row(*(Text.assemble(OK if r.rows[i].exact else MISS, (f" {r.label}", "bold")) for r in results))
        grid.add_row(*(Text(r.rows[i].answer or "(empty answer)", style="" if r.rows[i].answer else "dim")
                       for r in results))
        parts.append(grid)
        parts.append(Text(""))
    return Group(*parts)


class EvaluateScreen(ModalScreen[None]):
    """Pushed by `e` after a run: evaluates in a thread worker, then shows the scores and the rows."""

    DEFAULT_CSS = """
    EvaluateScreen { align: center middle; }
    EvaluateScreen > Vertical { width: 100%; height: 1fr; border: thick $primary; background: $surface; padding: 0 1; }
    EvaluateScreen #eval-head { height: auto; }
    EvaluateScreen #eval-status { height: auto; }
    EvaluateScreen #eval-status.-failed { color: $error; }
    EvaluateScreen #eval-scores { height: auto; margin-bottom: 1; }
    EvaluateScreen #eval-body { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("r", "run", "Run again")]

    def __init__(self, engine: Any, adapter: str, dataset: str, *, limit: int | None = None,
                 skip_invalid: bool = False) -> None:
        super().__init__()
        self.engine, self.adapter, self.dataset = engine, adapter, dataset
        self.limit, self.skip_invalid = limit, skip_invalid
        self.results: list | None = None
        self.error = ""
        self.heading = ""
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "evaluate: base model vs adapter"
            box.border_subtitle = "↑↓ scroll · esc close"
            yield Static(Text(f"adapter {self.adapter}", style="dim"), id="eval-head")
            yield Static("", id="eval-status")
            yield Static("", id="eval-scores")
            with VerticalScroll(id="eval-body"):
                yield Static("", id="eval-rows")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#eval-body").focus()
        self.action_run()

    def action_run(self) -> None:
        if self.running:
            return
        self.running, self.results, self.error, self.heading = True, None, "", ""
        self.query_one("#eval-status").remove_class("-failed")
        self._status(Text(f"evaluating the held-out rows of {self.dataset}…", style="bold"))
        self.query_one("#eval-scores", Static).update("")
        self.query_one("#eval-rows", Static).update("")
        self.refresh_bindings()
        self._evaluate()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run":
            return None if self.running else True
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="evaluate")
    def _evaluate(self) -> None:
        worker = get_current_worker()

        def progress(text: str) -> None:
            if worker.is_cancelled:
                raise Cancelled()
            self.post_message(EvalProgress(text))

        try:
            results = self.engine.evaluate(self.adapter, self.dataset, self.limit, progress,
                                           skip_invalid=self.skip_invalid)
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - shown; error_text keeps a bug's traceback
            self.post_message(EvalDone([], error_text(exc)))
        else:
            self.post_message(EvalDone(results))

    def _status(self, text: Text) -> None:
        status = self.query_one("#eval-status", Static)
        status.update(text)
        status.display = bool(text.plain)

    def on_eval_progress(self, message: EvalProgress) -> None:
        if not self.heading:  # the first one says which rows are scored
            self.heading = message.text
            self.query_one("#eval-head", Static).update(Text(f"evaluating {self.heading}", style="bold"))
            self._status(Text("base model first, then the adapter…", style="dim"))
        else:
            self._status(Text(f"{message.text}…", style="dim"))

    def on_eval_done(self, message: EvalDone) -> None:
        self.running = False
        self.refresh_bindings()
        status = self.query_one("#eval-status", Static)
        self.query_one("#eval-head", Static).update(Text.assemble((self.heading or self.dataset, "bold"),
                                                                  (f"\nadapter {self.adapter}", "dim")))
        if message.error:
            self.error = message.error
            status.add_class("-failed")
            self._status(Text.assemble(("✘ evaluation failed: ", "bold"), message.error,
                                       ("\nr runs it again · esc closes", "dim")))
            return
        status.remove_class("-failed")
        self.results = message.results
        self._status(Text(""))
        self.query_one("#eval-scores", Static).update(scores_table(message.results))
        self.query_one("#eval-rows", Static).update(rows_view(message.results))

    def action_close(self) -> None:
        self.dismiss(None)
