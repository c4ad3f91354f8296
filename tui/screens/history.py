"""Runs (h): a table of the runs found on disk, live ones first; Enter re-plots a past run's loss and memory
curves, or attaches to a run that is going; r resumes one whose process ended without finishing."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState, get_current_worker

from core.events import loss_text
from core.runs.history import History, RunRecord, display_path, find_runs

from ..widgets.chart import LossChart, StepChart
from ..widgets.training import duration

STATES = {  # symbol, word, style: the same marks as the training panel's summary
    "running": ("●", "running", "bold cyan"),
    "finished": ("✔", "finished", "green"),
    "stopped": ("■", "stopped", "yellow"),
    "unfinished": ("…", "unfinished", "cyan"),
    "diverged": ("✘", "diverged", "bold red"),
    "unreadable": ("✘", "unreadable", "red"),
}
ORDER = ("state", "started", "preset", "model", "steps", "loss", "eval", "tok/s", "path")  # left to right
PRIORITY = ("state", "started", "steps", "loss", "path", "preset", "tok/s", "eval", "model")  # kept when narrow
MIN_PATH = 12


def _when(run: RunRecord) -> str:
    return run.started.strftime("%Y-%m-%d %H:%M") if run.started else "–"


def short_model(model: str, width: int = 24) -> str:
    """The last part of a model id or path (`HuggingFaceTB/SmolLM2-135M-Instruct` → `SmolLM2-135M-Instruct`)."""
    name = Path(model.rstrip("/")).name or model
    return name if len(name) <= width else name[:width - 1] + "…"


def state_text(run: RunRecord) -> Text:
    symbol, word, style = STATES.get(run.state, ("?", run.state, ""))
    return Text(f"{symbol} {word}", style=style)


def row_cells(run: RunRecord) -> dict[str, Text]:
    steps = f"{run.steps}/{run.total_steps}" if run.total_steps else (str(run.steps) if run.steps else "–")
    rate = "–" if run.tokens_per_s is None else f"{run.tokens_per_s:,.0f}"
    cells = {"started": _when(run), "preset": run.preset or "–",
             "model": short_model(run.model) if run.model else "–",
             "steps": steps, "loss": loss_text(run.train_loss), "eval": loss_text(run.eval_loss), "tok/s": rate,
             "path": display_path(run.path)}
    return {"state": state_text(run), **{k: Text(v) for k, v in cells.items()}}


def fit_columns(rows: list[dict[str, Text]], width: int) -> tuple[list[str], int]:
    """The columns that fit `width` cells (most useful first, the path squeezed down to MIN_PATH), and the path's
    width; a narrow terminal shows the rest in the chosen run's summary."""
    natural = {k: max([len(k)] + [r[k].cell_len for r in rows]) for k in ORDER}
    budget, chosen = width, set()
    for key in PRIORITY:
        need = (min(natural[key], MIN_PATH) if key == "path" else natural[key]) + 2  # 1 cell of padding each side
        if need <= budget:
            chosen.add(key)
            budget -= need
    path_width = min(natural["path"], MIN_PATH + budget) if "path" in chosen else 0
    return [k for k in ORDER if k in chosen], path_width


def _left_cut(text: Text, width: int) -> Text:
    """The end of a path is what tells runs apart: cut from the left."""
    return text if text.cell_len <= width else Text("…" + text.plain[-(width - 1):])


def summary_text(run: RunRecord) -> Text:
    """What the run came to, what it trained on, and where it is: 4 short lines (80 columns)."""
    symbol, word, style = STATES.get(run.state, ("?", run.state, ""))
    text = Text.assemble((f"{symbol} {word.capitalize()}", f"bold {style}"),
                         f": {run.steps}/{run.total_steps} steps in {duration(run.runtime_s)} · "
                         f"train loss {loss_text(run.train_loss)} · eval loss {loss_text(run.eval_loss)}")
    if run.error:
        text.append(f"\n{run.error}", style="bold red")
    if run.state == "running" and run.owner is not None:
        text.append(f"\ngoing now ({run.owner.describe()}): ", style="bold cyan")
        text.append_text(Text.assemble(("enter", "bold reverse"), " attaches (live curves, s stops it)"))
    elif run.state == "unfinished":
        who = f" ({run.owner.describe()})" if run.owner is not None and run.owner.pid else ""
        text.append(f"\nits process ended without finishing{who}", style="bold yellow")
        if run.resumable:
            text.append_text(Text.assemble(" · ", ("r", "bold reverse"), " resumes it from its last checkpoint"))
    facts = []
    if run.tokens_per_s is not None:
        facts.append(f"{run.tokens_per_s:,.0f} tok/s")
    if run.peak_gib is not None:
        facts.append(f"peak {run.peak_gib:.2f} GiB")
    facts += [f"preset {run.preset or '–'}", run.model or "model –"]
    text.append("\n" + " · ".join(facts))
    text.append(f"\ndata {display_path(run.dataset) if run.dataset else '–'} · started {_when(run)}")
    text.append("\nPath: ", style="bold")
    text.append(display_path(run.path))
    if run.resumable:
        text.append("  resumable: ", style="bold")
        text.append(str(run.checkpoint.relative_to(run.path)) if run.checkpoint.is_relative_to(run.path)
                    else display_path(run.checkpoint))
    return text


class MemoryChart(StepChart):
    """A run's memory in GiB against the step: torch allocated (or process RAM) and the GPU's NVML reading."""

    EMPTY = "no memory samples"

    def __init__(self, **kwargs) -> None:
        super().__init__("memory GiB", **kwargs)

    @property
    def main(self) -> list[tuple[float, float]]:
        return self.series[0]

    @property
    def nvml(self) -> list[tuple[float, float]]:
        return self.series[1]

    def show(self, run: RunRecord) -> None:
        self.series = [list(run.memory_curve), list(run.nvml_curve)]
        self.total_steps = run.total_steps or None
        label = "allocated" if run.memory_label == "torch allocated" else run.memory_label
        legend = f"[cyan]⣀ {label}[/]" if self.main else ""
        self.border_subtitle = legend + ("  [yellow]⣀ GPU[/]" if self.nvml else "")
        self.refresh()


class HistoryScreen(ModalScreen[tuple[str, RunRecord] | None]):
    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > Vertical { width: 100%; height: 100%; border: thick $primary; background: $surface; padding: 0 1; }
    HistoryScreen #history-where { height: auto; max-height: 3; color: $text-muted; }
    HistoryScreen #history-table { height: auto; max-height: 40%; }
    HistoryScreen #history-summary { height: auto; }
    HistoryScreen #history-charts { height: 1fr; min-height: 6; display: none; }
    HistoryScreen.-shown #history-charts { display: block; }
    HistoryScreen LossChart { width: 2fr; }
    HistoryScreen MemoryChart { width: 1fr; }
    """
    BINDINGS = [Binding("escape,q", "dismiss", "Close"), Binding("r", "resume", "Resume")]

    class Loaded(Message):
        def __init__(self, history: History) -> None:
            super().__init__()
            self.history = history

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.history: History | None = None
        self.shown: RunRecord | None = None
        self.columns: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "past runs"
            box.border_subtitle = "↑↓ choose · enter curves · esc close"
            yield Static(Text("looking for past runs…", style="dim"), id="history-where")
            yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="history-summary")
            with Horizontal(id="history-charts"):
                yield LossChart(id="history-loss")
                yield MemoryChart(id="history-memory")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def _load(self) -> None:
        worker = get_current_worker()
        found = find_runs(self.output_dir, cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(self.Loaded(found))

    def on_history_screen_loaded(self, message: Loaded) -> None:
        self.history = message.history
        runs, where = message.history.runs, self.query_one("#history-where", Static)
        table = self.query_one(DataTable)
        if not runs:
            table.display = False
            where.update(Text(f"No past runs found in {message.history.where()}.\n"
                              "A run appears here once it has started (t on the main screen)."))
            return
        where.update(Text(f"{len(runs)} run(s), newest first, from {message.history.where()}", style="dim"))
        self._fill_table()
        self.query_one("#history-summary", Static).update(
            Text.assemble(("enter", "bold reverse"), " shows the chosen run's loss and memory curves", style="dim"))

    def _fill_table(self) -> None:
        """(Re)build the table with the columns that fit the screen's width."""
        table = self.query_one(DataTable)
        rows = [row_cells(run) for run in self.history.runs] if self.history else []
        scrollbar = 2 if len(rows) + 1 > (self.size.height - 2) * 0.4 else 0  # more rows than max-height: 40%
        self.columns, path_width = fit_columns(rows, self.size.width - 4 - scrollbar)  # border and padding: 4
        cursor = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*self.columns)
        for i, row in enumerate(rows):
            row["path"] = _left_cut(row["path"], path_width) if path_width else row["path"]
            table.add_row(*(row[k] for k in self.columns), key=str(i))
        table.move_cursor(row=min(cursor, len(rows) - 1))

    def on_resize(self) -> None:
        if self.history is not None and self.history.runs:
            self._fill_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # the app's own handler opens the sample preview
        if self.history is not None and event.row_key.value is not None:
            run = self.history.runs[int(event.row_key.value)]
            if run.state == "running":
                self.dismiss(("attach", run))
            else:
                self.show_run(run)

    def action_resume(self) -> None:
        table = self.query_one(DataTable)
        if self.history is None or not self.history.runs or table.cursor_row < 0:
            return
        run = self.history.runs[table.cursor_row]
        if run.resumable:
            self.dismiss(("resume", run))
        else:
            self.notify("only a run that ended early with a checkpoint can be resumed", severity="warning")

    def show_run(self, run: RunRecord) -> None:
        self.shown = run
        self.query_one("#history-summary", Static).update(summary_text(run))
        chart = self.query_one(LossChart)
        chart.reset(run.total_steps or None)
        chart.series = [list(run.train_curve), list(run.eval_curve)]
        chart.border_title = f"loss · {display_path(run.path)}"
        chart.refresh()
        self.query_one(MemoryChart).show(run)
        self.add_class("-shown")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "history" and event.state == WorkerState.ERROR:
            event.stop()
            self.query_one("#history-where", Static).update(
                Text(f"cannot list past runs: {type(event.worker.error).__name__}: {event.worker.error}", style="red"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
