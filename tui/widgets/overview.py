"""Overview tab, the first screen: the hardware, the suggested preset with its reason, and a sample of the data.

Everything here comes from the start-up jobs that are torch-free (NVML probe, dataset read); token-length stats
stay on the Dataset tab.
"""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from core.data.examples import flat
from core.presets import PRESETS, batch_label

from .dataset import error_text, prompt_and_answer, skipped_rows
from .hardware import HardwarePanel
from .presets import fit_warnings

SAMPLE_ROWS = 3
ARROW = " → "


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def instruction_of(example: Any) -> str:
    """The user's request without the attached input (Alpaca: 'instruction', before the blank line)."""
    prompt, _ = prompt_and_answer(example)
    return flat(prompt.split("\n\n", 1)[0]) or flat(prompt)


def sample_line(line: int, instruction: str, answer: str, width: int) -> Text:
    """`  12  instruction → answer`, cut to `width`: each side keeps at least about half the room."""
    number = f"{line:>4}  "
    room = max(width - len(number) - len(ARROW), 10)
    if not answer:
        return Text.assemble((number, "dim"), clip(instruction, room))
    if len(instruction) + len(answer) > room:
        left = min(len(instruction), max(room // 2, room - len(answer)))
        instruction, answer = clip(instruction, left), clip(answer, room - left)
    return Text.assemble((number, "dim"), instruction, (ARROW, "bold cyan"), (answer, "green"))


class DataSample(Widget):
    """The first rows of the dataset as `instruction → answer`, one line each, cut to the widget's width."""

    DEFAULT_CSS = """
    DataSample { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[tuple[int, str, str]] = []

    def show(self, examples: list) -> None:
        self.rows = [(e.line, instruction_of(e), flat(prompt_and_answer(e)[1])) for e in examples[:SAMPLE_ROWS]]
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.rows)

    def render(self) -> Text:
        width = self.content_size.width or 78
        return Text("\n").join(sample_line(*row, width) for row in self.rows)


def plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def reason_text(suggestion: Any, report: Any | None) -> str:
    """The suggestion's reason, without repeating the NVML error the hardware panel just above already shows."""
    error = getattr(report, "nvml_error", None)
    if report is not None and not report.gpus and error and error in suggestion.reason:
        return suggestion.reason.replace(error, "no NVIDIA GPU")
    return suggestion.reason


def config_line(config: Any, estimate_gib: float | None) -> str:
    steps = plural(config.max_steps, "step") if config.max_steps > 0 else plural(config.epochs, "epoch")
    line = f"{config.model}, {steps}, batch {batch_label(config)}, max len {config.max_length}"
    if estimate_gib is not None:
        line += f", {'VRAM' if config.device == 'cuda' else 'RAM'} ≈ {estimate_gib:.1f} GiB"
    return line


def preset_text(active: str, suggestion: Any | None, config: Any | None, report: Any | None,
                estimate_gib: float | None) -> Text:
    text = Text.assemble(("Preset ", "bold"), (active, "bold green" if suggestion and suggestion.preset == active
                                                else "bold"))
    if suggestion is None:
        text.append("  looking at the hardware for a suggestion…", style="dim")
    elif suggestion.preset == active:
        text.append("  ★ suggested", style="bold green")
        text.append("  (change it on tab 2)", style="dim")
        text.append_text(Text.assemble("\n", ("why: ", "bold"), reason_text(suggestion, report)))
    else:
        text.append("  (chosen; change it on tab 2)", style="dim")
        text.append_text(Text.assemble("\n", ("suggested: ", "bold"), (suggestion.preset, "bold green"), " — ",
                                       reason_text(suggestion, report)))
    if config is None:
        text.append("\n⚠ some values on tab 2 are invalid: fix them before training", style="bold yellow")
        return text
    text.append("\n" + config_line(config, estimate_gib), style="dim")
    for warning in fit_warnings(config, report, estimate_gib):
        text.append(f"\n⚠ {warning}", style="bold yellow")
    return text


class OverviewPanel(VerticalScroll):
    """Tab 1. The app feeds it: `show_report` (probe), `show_config` (preset panel), `show_dataset` (read)."""

    DEFAULT_CSS = """
    OverviewPanel { padding: 0 1; }
    OverviewPanel #overview-preset { margin-top: 1; }
    OverviewPanel #overview-data { margin-top: 1; }
    OverviewPanel #overview-hint { color: $text-muted; }
    OverviewPanel #overview-long { display: none; }
    OverviewPanel #overview-data.-error { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, hardware: HardwarePanel, preset: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hardware = hardware
        self.active, self.suggestion, self.report = preset, None, None
        self.config: Any | None = None
        self.estimate_gib: float | None = None
        self.dataset_shown: Any | None = None  # the report or error last shown (tests wait on it)

    def compose(self) -> ComposeResult:
        yield self.hardware
        yield Static(preset_text(self.active, None, None, None, None), id="overview-preset")
        yield Static(Text.assemble(("Data ", "bold"), ("reading…", "dim")), id="overview-data")
        yield Static("", id="overview-long")  # rows over max length, once the Dataset tab has measured them
        yield DataSample(id="overview-sample")
        yield Static("", id="overview-hint")

    def show_report(self, report: Any, suggestion: Any) -> None:
        self.report, self.suggestion = report, suggestion
        self.hardware.show_report(report, suggestion)
        self._paint_preset()

    def show_config(self, preset: str, config: Any | None, estimate_gib: float | None) -> None:
        self.active, self.config, self.estimate_gib = preset, config, estimate_gib
        self._paint_preset()

    def on_mount(self) -> None:
        self._paint_preset()  # what arrived before the panel was composed (a loaded machine's first paint)

    def _paint_preset(self) -> None:
        found = self.query("#overview-preset")  # empty until composed: the values wait for on_mount
        if self.active in PRESETS and found:
            found.first(Static).update(
                preset_text(self.active, self.suggestion, self.config, self.report, self.estimate_gib))

    def show_reading(self, path: str) -> None:
        self.dataset_shown = None
        self.query_one("#overview-data", Static).update(Text.assemble(("Data ", "bold"), (f"reading {path}…", "dim")))

    def show_long_rows(self, stats: Any, truncation: str) -> None:
        """The rows longer than max length and what training does with them (from the Dataset tab's stats)."""
        from core.data.truncation import long_rows_text

        widget = self.query_one("#overview-long", Static)
        widget.display = bool(stats.over_max)  # nothing to say when every row fits
        if not stats.over_max:
            return
        first, *rest = long_rows_text(stats, truncation)
        widget.update(Text.assemble((f"⚠ {first}", "bold yellow"), *[(f"\n  {line}", "yellow") for line in rest[:1]]))

    def show_dataset(self, path: str, report: Any | None, error: BaseException | None, format_label: str) -> None:
        head = self.query_one("#overview-data", Static)
        sample = self.query_one(DataSample)
        hint = self.query_one("#overview-hint", Static)
        self.dataset_shown = report if error is None else error
        self.query_one("#overview-long", Static).display = False  # until the new file's lengths are measured
        if error is not None or report is None:
            sample.show([])
            lines = (error_text(error) if error else "").splitlines()
            text = Text.assemble(("Data ", "bold"), ("✘ ", "bold red"), (f"{path} cannot be used as it is", "bold"))
            head.add_class("-error")  # a few lines, each cut to the width: the full list is on tab 3
            for line in lines[:4]:
                text.append("\n" + line)
            head.update(text)
            hint.update("every problem on tab 3 · fix the file and press r, or k to skip the bad rows")
            return
        head.remove_class("-error")
        rows = len(report.examples)
        # The short name ("GenAptitude / Alpaca"): the fields it expects are on tab 3 and in the row sample.
        short = format_label.split(" (", 1)[0]
        text = Text.assemble(("Data ", "bold"), path, ", ", (plural(rows, "row"), "bold"), ", ", f"{short} format")
        skipped, where = skipped_rows(report)
        if skipped:
            text.append(f"\n⚠ {skipped} invalid row(s) skipped{where}", style="bold yellow")
        head.update(text)
        sample.show(report.examples)
        hint.update("tab 3: every row, token lengths, the text the model sees · t: train")
