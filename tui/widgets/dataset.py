"""Dataset panel: format, rows, token-length stats, errors with line numbers, and a table of samples."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import get_current_worker


from core.data.examples import flat

from .. import messages
from ..messages import DatasetLoaded, LengthStatsReady


def one_line(text: str, limit: int = 300) -> str:
    line = flat(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def prompt_and_answer(example: Any) -> tuple[str, str]:
    """The user's text (instruction + input) and the answer, as the table shows them: an instruction/input row's
    instruction and input whichever turns its layout puts them in (the line above the table says which)."""
    if getattr(example, "layout", None) and example.messages:
        raw = example.raw or {}
        text = "\n\n".join(t for t in (raw.get("instruction") or "", raw.get("input") or "") if t.strip())
        return text, example.messages[-1].get("content", "")
    if example.messages:
        users = [m.get("content", "") for m in example.messages if m.get("role") == "user"]
        answers = [m.get("content", "") for m in example.messages if m.get("role") == "assistant"]
        return (users[0] if users else "", answers[-1] if answers else "")
    return example.text or "", ""


def skipped_rows(report) -> tuple[int, str]:
    """How many rows --skip-invalid left out, and " (line 3, 5…)" naming the first eight (or "")."""
    skipped = report.skipped
    lines = ", ".join(str(p.line) for p in report.problems[:8] if p.line is not None)
    return skipped, (f" (line {lines}{'…' if skipped > 8 else ''})" if lines else "")


def error_text(error: BaseException) -> str:
    return messages.error_text(error, limit=50, doing="could not read the dataset: ")


def stats_text(stats: Any, model: str, max_length: int, truncation: str = "keep-answer") -> Text:
    from core.data.truncation import long_rows_text

    text = Text.assemble(("tokens ", "bold"), (f"({model}, max length {max_length}) ", "dim"), f"min {stats.min} · median {stats.median} · p95 {stats.p95} · "
                                              f"max {stats.max}")
    if stats.over_max:
        for line in long_rows_text(stats, truncation):
            text.append(f"\n⚠ {line}", style="bold yellow")
    else:
        text.append("  all rows fit max length", style="green")
    return text


class DatasetPanel(Vertical):
    DEFAULT_CSS = """
    DatasetPanel { padding: 0 1; }
    DatasetPanel #dataset-file { height: 1; }
    DatasetPanel #dataset-file > Label { width: 6; }
    DatasetPanel #dataset-path { width: 1fr; }
    DatasetPanel #dataset-layout { display: none; }
    DatasetPanel #dataset-error { display: none; height: 1fr; border: round $error; padding: 0 1; }
    DatasetPanel.-error #dataset-error { display: block; }
    DatasetPanel.-error #samples { display: none; }
    DatasetPanel #samples { height: 1fr; }
    """

    BINDINGS = [Binding("escape", "leave_field", "Leave field")]

    def __init__(self, engine: Any, path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.path = path
        self.report: Any | None = None
        self.error: BaseException | None = None
        self.skip_invalid = False
        self.model, self.max_length, self.truncation = "", 0, "keep-answer"
        self.instruction_setting = "system"  # the instruction_turn setting, and the layout it gives with the model
        self.instruction_turn: str | None = None  # (core.data.layout; None until the model's template is read)
        self.stats: Any | None = None
        self.stats_key: tuple | None = None
        self._table_width = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="dataset-file"):
            yield Label("file")
            yield Input(self.path, id="dataset-path", compact=True)
        yield Static(Text("reading…", style="dim"), id="dataset-summary")
        yield Static("", id="dataset-layout")
        yield Static("", id="dataset-stats")
        with VerticalScroll(id="dataset-error"):
            yield Static("", id="dataset-error-text")
        yield DataTable(id="samples", cursor_type="row", zebra_stripes=True)

    # -- loading ---------------------------------------------------------------------------------------
    def load(self, path: str | None = None, skip_invalid: bool = False) -> None:
        self.path = path or self.path
        self.query_one("#dataset-summary", Static).update(Text(f"reading {self.path}…", style="dim"))
        self._read(self.path, skip_invalid)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dataset")
    def _read(self, path: str, skip_invalid: bool) -> None:
        try:
            report = self.engine.read_dataset(path, skip_invalid=skip_invalid)
        except Exception as exc:  # noqa: BLE001 - a DatasetError names the lines; a bug is shown, its traceback kept
            self.post_message(DatasetLoaded(None, exc, skip_invalid))
        else:
            self.post_message(DatasetLoaded(report, None, skip_invalid))

    def action_leave_field(self) -> None:
        self.query_one(DataTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":
            return isinstance(self.app.focused, Input)
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.load(event.value.strip(), skip_invalid=False)

    def on_dataset_loaded(self, message: DatasetLoaded) -> None:
        self.report, self.error, self.skip_invalid = message.report, message.error, message.skip_invalid
        self.set_class(message.error is not None, "-error")
        self.stats, self.stats_key = None, None
        summary = self.query_one("#dataset-summary", Static)
        if message.error is not None:
            summary.update(Text.assemble(("✘ ", "bold red"), (f"{self.path} cannot be used as it is", "bold"),
                                         "  fix the file and press r to reload, or k to skip the bad rows"))
            self.query_one("#dataset-error-text", Static).update(Text(error_text(message.error)))
            self.query_one("#dataset-stats", Static).update("")
            self.query_one(DataTable).clear(columns=True)
            self._show_layout()
            return
        report = message.report
        text = Text.assemble(("format ", "bold"), self.engine.format_label(report.format),
                             ("  rows ", "bold"), str(len(report.examples)))
        notes = [f"{report.blank_lines} blank line(s) ignored" if report.blank_lines else "",
                 "Windows line endings" if getattr(report, "had_crlf", False) else "",
                 "byte-order mark" if getattr(report, "had_bom", False) else ""]
        if any(notes):
            text.append(f"  ({', '.join(n for n in notes if n)})", style="dim")
        skipped, where = skipped_rows(report)
        if skipped:
            text.append(f"\n⚠ skipped {skipped} invalid row(s){where}", style="bold yellow")
        summary.update(text)
        self._show_layout()
        self._fill_table()
        self.measure(self.model, self.max_length, self.truncation, self.instruction_setting)

    def _show_layout(self) -> None:
        """Which prompt layout applies to an instruction/input dataset (core.data.layout), under the summary."""
        try:
            line = self.query_one("#dataset-layout", Static)
        except NoMatches:
            return
        line.display = self.report is not None and self.report.format == "alpaca" and self.error is None
        if not line.display:
            return
        from core.data.layout import describe

        turn = self.instruction_turn or self.instruction_setting
        line.update(Text.assemble(("prompts ", "bold"), describe(turn, self.instruction_setting)))

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if self.report is None:
            return
        width = max(self.size.width - 12, 30)
        self._table_width = self.size.width
        table.add_column("line", width=5)
        table.add_column("instruction / user", width=width * 11 // 20)
        table.add_column("answer", width=width - width * 11 // 20)
        for i, example in enumerate(self.report.examples):
            prompt, answer = prompt_and_answer(example)
            table.add_row(Text(str(example.line)), Text(one_line(prompt)), Text(one_line(answer)), key=str(i))

    def on_resize(self) -> None:
        if self.report is not None and abs(self.size.width - self._table_width) > 4:
            self._fill_table()

    # -- token lengths -------------------------------------------------------------------------------
    def measure(self, model: str, max_length: int, truncation: str = "keep-answer",
                instruction_turn: str = "system") -> None:
        """Token-length stats for the current model, max length and prompt layout (slow: loads the tokenizer); the
        stats hold what every truncation does, so a new `truncation` only repaints."""
        self.model, self.max_length = model, max_length
        changed, self.truncation = truncation != self.truncation, truncation
        if instruction_turn != self.instruction_setting:
            self.instruction_setting, self.instruction_turn = instruction_turn, None
            self._show_layout()
        line = self._stats_line()
        if self.report is None or not model or line is None:
            return
        key = (self.report.sha256, model, max_length, instruction_turn)
        if key == self.stats_key:
            if changed and self.stats is not None:
                line.update(stats_text(self.stats, model, max_length, truncation))
                self.post_message(LengthStatsReady(key, self.stats))  # the overview and preset tab repaint too
            return
        self.stats_key = key
        line.update(Text(f"measuring token lengths with {model}'s tokenizer (max length {max_length})…", style="dim"))
        self._measure(key, self.report.examples)

    def _stats_line(self) -> Static | None:
        """The token-length line; None while the panel has no children (the app closing as a timer fires)."""
        try:
            return self.query_one("#dataset-stats", Static)
        except NoMatches:
            return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="length-stats")
    def _measure(self, key: tuple, examples: list) -> None:
        try:
            turn = self.engine.instruction_turn(key[1], key[3])
            stats = self.engine.length_stats(key[1], examples, key[2], key[3])
        except Exception as exc:  # noqa: BLE001 - shown in the panel (a bug with where its traceback is kept)
            self.post_message(LengthStatsReady(key, None, messages.error_text(exc)))
        else:
            if not get_current_worker().is_cancelled:
                self.post_message(LengthStatsReady(key, stats, instruction_turn=turn))

    def on_length_stats_ready(self, message: LengthStatsReady) -> None:
        widget = self._stats_line()
        if message.key != self.stats_key or widget is None:
            return  # stats for a model or max length that is no longer chosen (or the app is closing)
        if message.stats is None:
            widget.update(Text(f"token lengths unavailable: {message.error}", style="yellow"))
            return
        self.stats = message.stats
        if message.instruction_turn and message.instruction_turn != self.instruction_turn:
            self.instruction_turn = message.instruction_turn
            self._show_layout()
        widget.update(stats_text(message.stats, message.key[1], message.key[2], self.truncation))

    # -- samples ---------------------------------------------------------------------------------------
    def selected_example(self) -> Any | None:
        table = self.query_one(DataTable)
        if self.report is None or table.row_count == 0:
            return None
        return self.report.examples[table.cursor_row]
