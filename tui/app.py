"""genaptitude-trainer-tui: pick a preset, check the dataset, train a LoRA adapter and watch it, from a terminal.

The first screen (tab 1, Overview) shows the hardware, the suggested preset with its reason and a sample of the data.

The app starts a run (a thread worker calling `Engine.train`) or attaches to one that is going (`Engine.attach`)
and routes engine events to the panels. The run is not the app's: it is a process of its own that outlives the
terminal (`ProcessEngine`); quitting asks whether to stop it or leave it running, and a hang-up leaves it running.
Nothing here imports torch: the engine is imported lazily by `RealEngine` when a slow job starts.
"""
from __future__ import annotations

from ._start_time import seconds_since_start  # noqa: I001  (first: the start-up clock)

import argparse
import asyncio
import os
import signal
import threading
import traceback
from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from core.events import Failed, Finished, MemorySample, Progress, StepLogged
from core.presets import PRESETS, config_for
from core.runs.output import DEFAULT_OUTPUT

from .commands import Command, palette
from .bridge import Engine, ProcessEngine
from .messages import (ConfigChanged, DatasetLoaded, EngineEvent, ExportDone, HardwareProbed, LengthStatsReady,
                       error_text)
from .screens.chat import ChatScreen
from .screens.confirm import ChoiceScreen, ConfirmScreen
from .screens.evaluate import EvaluateScreen
from .screens.export import InstallScreen, export_choice, zip_path
from .screens.preview import PreviewScreen
from .widgets.dataset import DatasetPanel
from .widgets.hardware import HardwarePanel
from .widgets.overview import OverviewPanel
from .widgets.presets import PresetPanel
from .widgets.training import TrainingPanel

DEFAULT_DATASET = "dataset.jsonl"
EVAL_ROWS = 50  # at most this many held-out rows in the evaluate view: two models answer each, greedy
TABS = Binding.Group("tabs ", compact=True)
# Per-step events are drawn a few times a second, not one repaint each: on a 2-core box the training process needs
# the cores the redraws would take (measured: 0.85 of the CLI's tokens/s with a repaint per event).
FREQUENT = (StepLogged, MemorySample, Progress)


def existing_output(output: str) -> tuple[str, bool] | None:
    """What is already at the output folder (described) and whether it can be resumed; None if empty. Core's
    rule (`core.runs.output.existing`, which asks `resume_point`, as `train --resume` does): the offer and the run agree."""
    from core.runs.output import existing

    return existing(output)


def live_owner(output: str):
    """The owner of a run going in `output` now (a `core.runs.output.Owner`), else None."""
    from core.runs.output import inspect

    owner = inspect(output)
    return owner if owner is not None and owner.live else None


class TrainerApp(App):
    TITLE = "GenAptitude trainer"
    CSS = """
    TabPane { padding: 0; }
    """
    BINDINGS = [  # a Command is also offered by the command palette (ctrl+p), as its title, with its tooltip
        Command("1", "show_tab('overview')", "Overview", group=TABS, title="Show overview",
                tooltip="hardware, suggested preset, data sample"),
        Command("2", "show_tab('preset')", "Preset", group=TABS, title="Show presets", tooltip="preset and values"),
        Command("3", "show_tab('dataset')", "Dataset", group=TABS, title="Show dataset",
                tooltip="format, rows, samples"),
        Command("4", "show_tab('training')", "Training", group=TABS, title="Show training",
                tooltip="loss, memory, log"),
        Command("t", "train", "Train", title="Start training", tooltip="train with the chosen preset and values"),
        Command("s", "stop", "Stop+save", title="Stop training and save",
                tooltip="save the adapter and a resumable checkpoint"),
        Binding("p", "preview", "Preview"),
        Command("r", "reload_dataset", "Reload", title="Reload dataset", tooltip="read the dataset file again"),
        Command("k", "skip_invalid", "Skip bad rows", title="Skip invalid dataset rows",
                tooltip="train on the valid rows only"),
        Command("e", "evaluate", "Evaluate", title="Evaluate the adapter",
                tooltip="base model vs adapter on the run's held-out rows"),
        Command("c", "chat", "Chat", title="Chat with the adapter",
                tooltip="try any prompt on the base model and the adapter, side by side"),
        Command("x", "export", "Export", title="Export the adapter",
                tooltip="write <adapter>.zip, or install it for GenAptitude"),
        Command("h", "history", "Runs", title="Show past runs",
                tooltip="list earlier runs and re-plot their loss and memory curves"),
        Command("q", "quit", "Quit", title="Quit", tooltip="asks first when a run is going"),
    ]

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
        with self.tabs:
            with TabPane("1 Overview", id="overview"):
                yield self.overview
            with TabPane("2 Preset", id="preset"):
                yield self.presets
            with TabPane("3 Dataset", id="dataset"):
                yield self.dataset
            with TabPane("4 Training", id="training"):
                yield self.training
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._probe()
        self.overview.show_reading(self.dataset_path)
        self.dataset.load(self.dataset_path)
        self.overview.focus()
        self._find_live_runs()
        if self.is_headless:  # (tests) the test's own process keeps its signals
            return
        try:  # the terminal hung up (SSH dropped, tmux session killed): leave the run going, exit
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.hang_up)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def hang_up(self) -> None:
        """The terminal is gone: stop following the run (it goes on in its own session) and exit at once; a
        blocked write to the dead terminal must not keep the app alive, burning a core."""
        self.leave_event.set()
        deadline = threading.Timer(3.0, os._exit, args=(0,))
        deadline.daemon = True
        deadline.start()
        self.exit()

    # -- live runs ---------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="live-runs")
    def _find_live_runs(self) -> None:
        runs = self.engine.live_runs(self.output_dir)
        if runs:
            self.call_from_thread(self._offer_attach, runs)
            return
        from core.runs.output import inspect

        owner = inspect(self.output_dir)  # a run owned the folder, and its process is gone
        found = existing_output(self.output_dir) if owner is not None and not owner.live else None
        if found and found[1] and "unfinished run" in found[0]:
            self.call_from_thread(self._offer_resume, f"{found[0]} ({owner.describe()})")

    @work(exclusive=True, group="attach-offer")
    async def _offer_resume(self, what: str) -> None:
        """The last run into the output folder ended without finishing (killed, crashed): offer to resume it."""
        if self.training.running:
            return
        choice = await self.push_screen_wait(ChoiceScreen(
            "The last run did not finish", f"{what}: its process ended without finishing (killed, a reboot, a "
            "crash). Resume it from its last checkpoint, with the settings shown?",
            {"r": ("resume", "resume it"), "n": ("no", "not now")}))
        if choice == "resume":
            self._start_flow(resume_asked=True)

    @work(exclusive=True, group="attach-offer")
    async def _offer_attach(self, runs: list) -> None:
        if self.training.running:
            return
        run = runs[0]
        steps = f"step {run.steps}/{run.total_steps}" if run.total_steps else "starting up"
        others = f"\n({len(runs) - 1} more: h lists them)" if len(runs) > 1 else ""
        body = (f"{run.output}\n{steps} · preset {run.preset or '?'} · {run.owner.describe()}{others}\n\n"
                "Attach to watch it live (its curves so far are replayed); s then stops it, q leaves it running.")
        choice = await self.push_screen_wait(ChoiceScreen(
            "A training run is going", body, {"a": ("attach", "attach to it"), "n": ("no", "not now")}))
        if choice == "attach":
            self.attach(str(run.output), run.preset, run.owner.describe())

    def attach(self, output: str, preset: str = "", who: str = "") -> None:
        """Follow a run that is going in `output`: replay its events, then update live."""
        if self.training.running:
            self.notify("a run is already shown; s stops it", severity="warning")
            return
        self.output_dir = output
        self.stop_event, self.leave_event = threading.Event(), threading.Event()
        self.quit_after_stop = False
        self.training.start(preset, "", output, attach=who or "a run of its own")
        self.action_show_tab("training")
        self._attach(output, self.stop_event, self.leave_event)
        self.refresh_bindings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _attach(self, output: str, stop_event: threading.Event, leave_event: threading.Event) -> Any:
        return self.engine.attach(output, on_event=lambda e: self.post_message(EngineEvent(e)),
                                  stop_event=stop_event, leave_event=leave_event)

    def on_ready(self) -> None:
        self.startup_seconds = seconds_since_start()
        self.log.info(f"first paint {self.startup_seconds:.3f} s after process start")
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
        model, max_length, truncation = message.config.model, message.config.max_length, message.config.truncation
        self._stats_timer = self.set_timer(max(self.stats_delay, 0.001),
                                           lambda: self.dataset.measure(model, max_length, truncation))

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
        self.push_screen(PreviewScreen(self.engine, example, config.model, config.max_length, config.truncation))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_preview()

    # -- the run -------------------------------------------------------------------------------------------
    def action_train(self) -> None:
        self._start_flow()

    @work(exclusive=True, group="start-run")
    async def _start_flow(self, resume_asked: bool = False) -> None:
        """Checks, then starts a run; `resume_asked`: the user already chose to resume the run in the output
        folder (from the start-up offer or `h`), so a resumable folder is not asked about again."""
        if self.training.running:
            self.notify("a run is already going; s stops it", severity="warning")
            return
        config = self.presets.config
        if config is None:
            self.notify("fix the values marked in red first", title="Cannot start", severity="error")
            self.action_show_tab("preset")
            return
        if self.dataset.error is not None:
            self.notify("the dataset has problems: fix the file and press r, or press k to skip the bad rows",
                        title="Cannot start", severity="error")
            self.action_show_tab("dataset")
            return
        warnings = self.presets.warnings()
        if warnings:
            body = "\n".join(f"⚠ {w}" for w in warnings) + "\n\nStart anyway?"
            if not await self.push_screen_wait(ConfirmScreen("This run will probably not fit this machine", body,
                                                             yes="start anyway", no="go back")):
                return
        owner = live_owner(self.output_dir)
        if owner is not None:
            choice = await self.push_screen_wait(ChoiceScreen(
                "A run is going in the output folder", f"{self.output_dir}: {owner.describe()}. A second run is not "
                "started into a folder a live run holds.", {"a": ("attach", "attach to it (s then stops it)")}))
            if choice == "attach":
                self.attach(self.output_dir, who=owner.describe())
            return
        resume = overwrite = False
        found = existing_output(self.output_dir)
        if found:
            what, resumable = found
            choices = {"o": ("overwrite", "start over, replacing it")}
            if resumable:
                choices = {"r": ("resume", "resume from its last checkpoint"), **choices}
            choice = "resume" if resume_asked and resumable else \
                await self.push_screen_wait(ChoiceScreen("The output folder is not empty", what, choices))
            if choice is None:
                return
            resume, overwrite = choice == "resume", choice == "overwrite"
        self._launch(config, resume=resume, overwrite=overwrite)

    def _launch(self, config, *, resume: bool, overwrite: bool) -> None:
        self.stop_event, self.leave_event = threading.Event(), threading.Event()
        self.quit_after_stop = False
        dataset = self.dataset.path
        self.training.start(config.preset, dataset, self.output_dir, resume=resume)
        self.action_show_tab("training")
        self._train(config, dataset, self.output_dir, self.stop_event, dict(
            resume=resume, overwrite=overwrite, skip_invalid=self.dataset.skip_invalid, leave_event=self.leave_event))
        self.refresh_bindings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _train(self, config, dataset: str, output: str, stop_event: threading.Event, options: dict) -> Path:
        return self.engine.train(config, dataset, output, on_event=lambda e: self.post_message(EngineEvent(e)),
                                 stop_event=stop_event, **options)

    def on_engine_event(self, message: EngineEvent) -> None:
        if isinstance(message.event, FREQUENT) and self.ui_interval > 0:
            self._pending.append(message.event)
            if self._flush_timer is None:
                self._flush_timer = self.set_timer(self.ui_interval, self._flush_events)
            return
        self._flush_events()  # keep the order: a run's last steps are drawn before its summary
        self.training.handle(message.event)
        if isinstance(message.event, Finished):
            self.training_result = message.event
        if isinstance(message.event, (Finished, Failed)):
            self.refresh_bindings()

    def _flush_events(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        last_progress = max((i for i, e in enumerate(pending) if isinstance(e, Progress)), default=-1)
        with self.batch_update():
            for i, event in enumerate(pending):
                if not isinstance(event, Progress) or i == last_progress:  # only the newest count is shown
                    self.training.handle(event)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker, state = event.worker, event.state
        if state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if worker.group == "train":
            self._flush_events()
            error = worker.error if state == WorkerState.ERROR else None
            if error is not None and not hasattr(error, "render"):
                trace = "".join(traceback.format_exception(error)).rstrip()
                self.training.log_line(Text(trace, style="red"))
            self.training.ended(error)
            self.sub_title = self.idle_sub_title
            self.refresh_bindings()
            if self.quit_after_stop:
                self.exit()
        elif state == WorkerState.ERROR:
            if worker.group == "probe":
                self.hardware_panel.show_error(f"{type(worker.error).__name__}: {worker.error}")
            self.notify(f"{worker.group} failed: {worker.error}", severity="error", timeout=10)

    def action_stop(self) -> None:
        if self.training.state != "running":
            return
        self.stop_event.set()
        self.training.stopping()
        self.sub_title = "stopping… saving the adapter"
        self.refresh_bindings()

    async def action_quit(self) -> None:
        if not self.training.running:
            self.exit()
        elif any(isinstance(s, ChoiceScreen) for s in self.screen_stack):
            return  # already asking
        elif self.training.state == "stopping":
            self.quit_after_stop = True
            self.notify("still saving the adapter; the app quits as soon as it is done")
        else:
            self._confirm_quit()

    @work(exclusive=True, group="quit")
    async def _confirm_quit(self) -> None:
        choice = await self.push_screen_wait(ChoiceScreen(
            "A training run is going",
            "Stop it (it finishes the current step, saves the adapter and a resumable checkpoint, then the app "
            "exits), or leave it running: it goes on without the app; come back with genaptitude-trainer-tui "
            f"(it offers to attach) or genaptitude-trainer attach {self.output_dir}.",
            {"s": ("stop", "stop, save and quit"), "l": ("leave", "leave it running and quit"),
             "n": ("no", "keep watching")}))
        if choice == "leave":
            self.leave_event.set()
            self.exit()
            return
        if choice != "stop":
            return
        if not self.training.running:
            self.exit()
            return
        self.quit_after_stop = True
        self.action_stop()

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

    @work(thread=True, exit_on_error=False, group="export")
    def _export(self, how: str, adapter: str, target: str, env_file: str | None = None) -> None:
        from core import export

        try:
            if how == "zip":
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
        if training is None:  # not mounted yet
            return True
        state = training.state
        if any(isinstance(s, (ChoiceScreen, PreviewScreen, EvaluateScreen, ChatScreen, InstallScreen))
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
