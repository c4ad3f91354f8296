"""genaptitude-trainer-tui: pick a preset, check the dataset, train a LoRA adapter and watch it, from a terminal.

The first screen (tab 1, Overview) shows the hardware, the suggested preset with its reason and a sample of the data.

The app starts a run (a thread worker calling `Engine.train`) or attaches to one that is going (`Engine.attach`)
and routes engine events to the panels: that lifecycle is `RunControl` (tui/run_control.py); the keys are in
tui/commands.py. The run is not the app's: it is a process of its own that outlives the terminal (`ProcessEngine`);
quitting asks whether to stop it or leave it running, and a hang-up leaves it running.
Nothing here imports torch: the engine is imported lazily by `RealEngine` when a slow job starts.
"""
from __future__ import annotations

from core.startup import seconds_since_start  # noqa: I001  (first: the start-up clock, core/startup.py)

import argparse
import threading
from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from core.events import Finished
from core.presets import PRESETS, config_for
from core.runs.output import DEFAULT_OUTPUT

from .commands import KEYS, palette
from .bridge import Engine, ProcessEngine
from .messages import (ConfigChanged, DatasetLoaded, ExportDone, ExportProgress, HardwareProbed, LengthStatsReady,
                       error_text)
from .run_control import RunControl
from .screens.chat import ChatScreen
from .screens.confirm import ChoiceScreen
from .screens.evaluate import EvaluateScreen
from .screens.export import GgufScreen, InstallScreen, export_choice, zip_path
from .screens.preview import PreviewScreen
from .widgets.dataset import DatasetPanel
from .widgets.hardware import HardwarePanel
from .widgets.overview import OverviewPanel
from .widgets.presets import PresetPanel
from .widgets.training import TrainingPanel

DEFAULT_DATASET = "dataset.jsonl"
EVAL_ROWS = 50  # at most this many held-out rows in the evaluate view: two models answer each, greedy


class TrainerApp(RunControl, App):  # RunControl first: its action_quit asks before quitting
    TITLE = "GenAptitude trainer"
    CSS = """
    TabPane { padding: 0; }
    """
    BINDINGS = KEYS

    def __init__(self, engine: Engine | None = None, *, dataset: str = DEFAULT_DATASET,
                 output: str = DEFAULT_OUTPUT, preset: str | None = None, model: str | None = None,
                 refresh_interval: float | None = 1.0, stats_delay: float = 0.5,
                 show_startup_time: bool = True, ui_interval: float = 0.25) -> None:
        super().__init__()
        self.ui_interval = ui_interval
        self._pending: list = []
        self._flush_timer = None
        self.engine = engine or ProcessEngine()
        self.dataset_path, self.output_dir = dataset, output
        self.initial_preset, self.model = preset, model
        self.refresh_interval, self.stats_delay = refresh_interval, stats_delay
        self.show_startup_time = show_startup_time
        self.startup_seconds: float | None = None
        self.idle_sub_title = ""
        self.hardware: Any | None = None
        self.stop_event = threading.Event()
        self.leave_event = threading.Event()  # set: stop following the run and leave it going (quit, hang-up)
        self.quit_after_stop = False
        self._stats_timer = None
        self.training_result: Finished | None = None

    def compose(self) -> ComposeResult:
        # The panels live as long as the app: keep them at hand (check_action runs on every footer refresh).
        self.hardware_panel = HardwarePanel(self.engine, self.refresh_interval)
        self.overview = OverviewPanel(self.hardware_panel, self.initial_preset or "cpu")
        self.presets = PresetPanel(self.engine, self.initial_preset, self.model)
        self.dataset = DatasetPanel(self.engine, self.dataset_path)
        self.training = TrainingPanel()
        self.tabs = TabbedContent(initial="overview")
        yield Header(show_clock=False, icon="≡")
        with self.tabs:  # tabs 2-4 get their panels after the first paint (`on_ready`): a third of the start-up
            with TabPane("1 Overview", id="overview"):
                yield self.overview
            yield TabPane("2 Preset", id="preset")
            yield TabPane("3 Dataset", id="dataset")
            yield TabPane("4 Training", id="training")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.overview.show_reading(self.dataset_path)
        self.overview.focus()
        if self.is_headless:  # (tests) the test's own process keeps its signals
            return
        try:  # the terminal hung up (SSH dropped, tmux session killed): leave the run going, exit
            self.watch_hangup()
        except (AttributeError, ValueError):  # no SIGHUP (Windows), or not the main thread
            pass

    async def on_ready(self) -> None:
        """The first screen is painted: now the other tabs' panels, then the work that drives them (the hardware
        probe, the dataset's check, a live run to attach to)."""
        self.startup_seconds = seconds_since_start()
        self.log.info(f"first paint {self.startup_seconds:.3f} s after process start")
        for pane, panel in (("preset", self.presets), ("dataset", self.dataset), ("training", self.training)):
            await self.query_one(f"#{pane}", TabPane).mount(panel)
        self._probe()
        self.dataset.load(self.dataset_path)
        self._find_live_runs()
        if self.show_startup_time:
            self.sub_title = self.idle_sub_title = f"ready in {self.startup_seconds:.2f} s"
            self.training.log_line(f"start-up: first screen painted {self.startup_seconds:.2f} s after launch", "dim")

    # -- hardware ------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="probe")
    def _probe(self) -> None:
        report = self.engine.probe()
        self.post_message(HardwareProbed(report, self.engine.suggest(report)))

    def on_hardware_probed(self, message: HardwareProbed) -> None:
        self.hardware = message.report
        self.overview.show_report(message.report, message.suggestion)
        self.presets.set_hardware(message.report, message.suggestion)

    # -- settings and dataset ------------------------------------------------------------------------------
    def on_config_changed(self, message: ConfigChanged) -> None:
        self.overview.show_config(self.presets.preset, message.config, self.presets.estimate_gib)
        if message.config is None:
            return
        self.training.idle_hint(message.config.preset, self.dataset.path, self.output_dir)
        if self._stats_timer is not None:
            self._stats_timer.stop()
        c = message.config
        model, max_length, truncation, turn = c.model, c.max_length, c.truncation, c.instruction_turn
        self._stats_timer = self.set_timer(max(self.stats_delay, 0.001),
                                           lambda: self.dataset.measure(model, max_length, truncation, turn))

    def on_dataset_loaded(self, message: DatasetLoaded) -> None:
        # Bubbled up from the dataset panel, which has already shown it: the overview shows a sample too.
        self.overview.show_dataset(self.dataset.path, message.report, message.error,
                                   self.engine.format_label(message.report.format) if message.report else "")
        self.presets.set_data(len(message.report.examples) if message.report else None, None)

    def on_length_stats_ready(self, message: LengthStatsReady) -> None:
        # Token lengths measured for the dataset tab: the preset tab's step plan uses the median row and suggests a
        # max length that fits the rows; the overview says how rows over max length are handled.
        if message.key == self.dataset.stats_key and message.stats is not None:
            self.presets.set_data(self.presets.data_rows, message.stats.median)
            self.overview.show_long_rows(message.stats, self.dataset.truncation)
            self.presets.set_length_stats(message.stats)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        return palette(self, super().get_system_commands(screen))

    def use_preset(self, name: str) -> None:
        self.presets.use_preset(name)
        self.action_show_tab("preset")

    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab
        focus = {"preset": "#preset-list", "dataset": "#dataset-error" if self.dataset.error else "#samples",
                 "training": "#run-log", "overview": "OverviewPanel"}
        self.query_one(focus[tab]).focus()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()

    def action_reload_dataset(self) -> None:
        self.overview.show_reading(self.dataset.path)
        self.dataset.load(skip_invalid=False)
        self.action_show_tab("dataset")

    def action_skip_invalid(self) -> None:
        self.overview.show_reading(self.dataset.path)
        self.dataset.load(skip_invalid=True)
        self.action_show_tab("dataset")

    def current_config(self):
        return self.presets.config or config_for(self.presets.preset, model=self.model)

    def action_preview(self) -> None:
        example = self.dataset.selected_example()
        if example is None:
            return
        config = self.current_config()
        self.push_screen(PreviewScreen(self.engine, example, config.model, config.max_length, config.truncation,
                                       config.instruction_turn))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_preview()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker, state = event.worker, event.state
        if state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if worker.group == "train":
            self._run_ended(worker.error if state == WorkerState.ERROR else None)
        elif state == WorkerState.ERROR:
            if worker.group == "probe":
                self.hardware_panel.show_error(f"{type(worker.error).__name__}: {worker.error}")
            self.notify(f"{worker.group} failed: {worker.error}", severity="error", timeout=10)

    # -- after a run ---------------------------------------------------------------------------------------
    def current_adapter(self) -> str | None:
        """The finished run's adapter, else one already in the output folder (from an earlier session)."""
        if self.training.running:
            return None
        if self.training.adapter_dir:
            return self.training.adapter_dir
        from core.runs.output import is_adapter

        out = Path(self.output_dir).expanduser()
        return str(out.resolve()) if is_adapter(out) else None

    def action_evaluate(self) -> None:
        if adapter := self.current_adapter():
            self.push_screen(EvaluateScreen(self.engine, adapter, self.dataset.path, limit=EVAL_ROWS,
                                            skip_invalid=self.dataset.skip_invalid))

    def action_chat(self) -> None:
        if adapter := self.current_adapter():
            self.push_screen(ChatScreen(self.engine, adapter))

    def action_export(self) -> None:
        if adapter := self.current_adapter():
            self._export_flow(adapter)

    @work(exclusive=True, group="export-flow")
    async def _export_flow(self, adapter: str) -> None:
        choice = await self.push_screen_wait(export_choice(adapter))
        if choice == "zip":
            self._export("zip", adapter, zip_path(adapter))
        elif choice == "install":
            answer = await self.push_screen_wait(InstallScreen(adapter))
            if answer is not None:
                self._export("install", adapter, *answer)
        elif choice == "gguf":
            answer = await self.push_screen_wait(GgufScreen(adapter))
            if answer is not None:
                self._export("gguf", adapter, *answer)

    @work(thread=True, exit_on_error=False, group="export")
    def _export(self, how: str, adapter: str, target: str, env_file: str | None = None) -> None:
        """zip (target: the zip file), install (target: the LoRA root) or gguf (target: the type)."""
        from core.adapter import export

        try:
            if how == "gguf":
                from core.adapter.gguf_export import write_gguf

                self.post_message(ExportProgress(None))
                lines = write_gguf(adapter, qtype=target, raise_env=env_file,
                                   emit=lambda event: self.post_message(ExportProgress(event))).lines()
            elif how == "zip":
                lines = [f"wrote {export.export_zip(adapter, target)}"]
            else:
                dest, backup = export.install(adapter, target, env_file)
                lines = [f"installed {dest}"]
                if env_file:
                    lines.append(f"{env_file}: RAISE_LORA_PATH={dest}")
                    lines.append(f"backup of the old .env: {backup}" if backup else f"{env_file} was created")
                else:
                    lines.append(f"set in GenAptitude's .env: RAISE_LORA_PATH={dest}")
        except Exception as exc:  # noqa: BLE001 - shown; error_text keeps a bug's traceback
            self.post_message(ExportDone(how, [], error_text(exc)))
        else:
            self.post_message(ExportDone(how, lines))

    def on_export_progress(self, message: ExportProgress) -> None:
        """The GGUF export's progress in the log: its phases and lines, and the tensors written every tenth."""
        from core.events import LogLine, Phase, TensorWritten

        event = message.event
        if event is None:  # the worker started: show the log the lines go to
            self.action_show_tab("training")
            return
        if isinstance(event, TensorWritten):
            tenth = event.done * 10 // event.total != (event.done - 1) * 10 // event.total
            if not (tenth or event.done == 1):
                return
            line = f"{event.done}/{event.total} tensors written ({event.tensor} {event.ggml_type})"
        elif isinstance(event, Phase):
            line = f"[{event.name}] {event.detail}"
        elif isinstance(event, LogLine):
            line = event.message
        else:
            return
        self.training.log_line(Text.assemble(("gguf: ", "bold"), line))

    def on_export_done(self, message: ExportDone) -> None:
        if message.error:
            self.training.log_line(Text.assemble((f"export ({message.title}) failed: ", "bold red"), message.error))
            self.notify(message.error, title=f"Export ({message.title}) failed", severity="error", timeout=15)
        else:
            for line in message.lines:
                self.training.log_line(Text.assemble(("export: ", "bold green"), line))
            self.notify("\n".join(message.lines), title=f"Exported ({message.title})", timeout=20)
        self.action_show_tab("training")

    def action_history(self) -> None:
        from .screens.history import HistoryScreen  # rarely used: imported when first opened

        self.push_screen(HistoryScreen(self.output_dir), self._history_choice)

    def _history_choice(self, choice: tuple[str, Any] | None) -> None:
        """The history screen closed: on a run that is going (attach) or one that died (resume it)."""
        if choice is None:
            return
        what, run = choice
        if what == "attach":
            self.attach(str(run.output), run.preset, run.owner.describe() if run.owner else "")
        elif what == "resume" and not self.training.running:
            self.output_dir = str(run.output)  # t's flow, with resume chosen (core's rule decides, as ever)
            self._start_flow(resume_asked=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        training: TrainingPanel | None = getattr(self, "training", None)
        if training is None:  # not composed yet
            return True
        if not training.is_mounted:  # the first paint is up, the other tabs' panels not yet (on_ready): only quit
            return action == "quit"
        state = training.state
        if any(isinstance(s, (ChoiceScreen, PreviewScreen, EvaluateScreen, ChatScreen, InstallScreen, GgufScreen))
               for s in self.screen_stack):
            # a dialog is open: it has the keys (ctrl+q still quits, tab still moves between its fields)
            return action in ("quit", "focus_next", "focus_previous")
        if action == "stop":
            return state == "running"
        if action == "train":
            return None if state in ("running", "stopping") else True
        if action in ("evaluate", "chat", "export"):
            return self.current_adapter() is not None
        if action == "skip_invalid":
            return self.dataset.error is not None
        if action == "preview":
            return self.tabs.active == "dataset" and self.dataset.report is not None
        return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="genaptitude-trainer-tui",
                                     description="Fine-tune a small instruct model with LoRA on a GenAptitude "
                                                 "export, from the terminal (works over SSH).")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="JSONL file (default: ./dataset.jsonl)")
    parser.add_argument("--model", default=None, help="model id or path (default: the preset's)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"adapter folder (default: ./{DEFAULT_OUTPUT})")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="preset to start with (default: suggested from the GPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = TrainerApp(dataset=args.dataset, output=args.output, preset=args.preset, model=args.model)
    app.run()
    done = app.training_result
    try:
        if app.leave_event.is_set() and app.training.running:
            print(f"the run goes on in {app.output_dir}; follow it with genaptitude-trainer-tui (it offers to "
                  f"attach) or genaptitude-trainer attach {app.output_dir}")
        elif done is not None:
            print(f"adapter: {done.output_dir}" + (" (stopped early; resumable)" if done.stopped_early else ""))
    except OSError:
        pass  # the terminal is gone (a hang-up): there is no one to tell
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
