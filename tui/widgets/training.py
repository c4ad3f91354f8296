"""Training panel: progress, loss chart, memory over time, log, and the end-of-run summary.

It only draws: `handle(event)` turns each `core.events` event into widget updates. The app owns the run.
"""
from __future__ import annotations


from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, RichLog, Sparkline, Static

from core.download import download_line
from core.errors import TrainerError
from core.events import (CheckpointSaved, Diverged, DownloadProgress, EvalLogged, Event, Failed, Finished,
                         HeldOutScored, LogLine, MemorySample, OomRecovered, Phase, Progress, RunStarted, StepLogged,
                         loss_text)

from .chart import LossChart
from .hardware import bar


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


VERDICT_STYLE = {"learned": "bold green", "partly": "bold yellow", "not learned": "bold red", "base knows": "yellow",
                 "diverged": "bold red"}


def held_out_text(s: HeldOutScored) -> Text:
    """The after-run check in the finish panel: exact match and similarity, base against adapter, and the verdict."""
    from core.train.learncheck import rows_text

    text = Text.assemble(("Held-out check", "bold"), f" ({rows_text(s.rows)}): exact match base "
                                                     f"{s.base_exact:.2f} → ",
                         (f"adapter {s.adapter_exact:.2f}", "bold"),
                         f", similarity {s.base_similarity:.2f} → {s.adapter_similarity:.2f}  ",
                         (s.verdict, VERDICT_STYLE.get(s.verdict, "bold")))
    if s.advice:
        text.append(f"\n  {s.advice}", style=VERDICT_STYLE.get(s.verdict, ""))
    return text


def summary_text(done: Finished, scored: HeldOutScored | None = None) -> Text:
    text = Text()
    if done.diverged:  # (core/train/divergence.py)
        text.append("✘ Diverged", style="bold red")
        text.append(f" after {done.steps}/{done.total_steps} steps: {done.diverged}")
    elif done.stopped_early:
        text.append("■ Stopped", style="bold yellow")
        text.append(f" at step {done.steps} of {done.total_steps}")
    else:
        text.append("✔ Finished", style="bold green")
        text.append(f": {done.steps}/{done.total_steps} steps")
    text.append(f" in {duration(done.runtime_s)} · train loss {loss_text(done.train_loss)} · "
                f"eval loss {loss_text(done.eval_loss)}")
    if scored is not None:
        text.append("\n")
        text.append_text(held_out_text(scored))
    # The keys before the paths: a long output path wraps over several lines, and at 80x24 the panel's last lines
    # are below the screen's edge; what to do next stays in sight, whatever the path.
    text.append("\nNext: ", style="bold")
    for key, what in (("e", "evaluate"), ("c", "chat"), ("x", "export (zip, install, GGUF)"), ("t", "train again")):
        text.append(key, style="bold reverse")
        text.append(f" {what}   ")
    text.rstrip()
    text.append("\nAdapter: ", style="bold")
    text.append(done.output_dir)
    if done.stopped_early and done.checkpoint_dir:
        text.append("\nResumable checkpoint: ", style="bold")
        text.append(done.checkpoint_dir)
        text.append("  (t, then r resume, continues the run)", style="dim")
    if not done.diverged:  # a diverged adapter is not one to point GenAptitude at
        # RAISE (GenAptitude) loads a GGUF and its tokenizer.json today; the folder is for a version that reads adapters
        text.append("\nRAISE: ", style="bold")
        text.append("x then g writes the GGUF it loads")
        text.append(f"  (adapter folder: RAISE_LORA_PATH={done.output_dir})", style="dim")
    return text


def failure_text(message: str, hint: str = "", problems: list | None = None) -> Text:
    text = Text.assemble(("✘ Training failed: ", "bold red"), message)
    for p in (problems or [])[:8]:
        p = p if isinstance(p, dict) else {"line": getattr(p, "line", None), "message": getattr(p, "message", p),
                                           "fix": getattr(p, "fix", "")}
        where = f"line {p['line']}: " if p.get("line") is not None else ""
        text.append(f"\n  {where}{p.get('message', '')}")
        if p.get("fix"):
            text.append(f"  fix: {p['fix']}", style="dim")
    if hint:
        text.append("\nhint: ", style="bold")
        text.append(hint)
    text.append("\nThe app is still usable: fix the problem, then press t to start again.", style="dim")
    return text


def gpu_bar(used: float | None, total: float | None, width: int = 8) -> Text:
    """`████░░░░ 31.2/80 GiB`: plain block characters, readable without colour or a mouse."""
    if used is None:
        return Text("n/a", style="dim")
    text = bar(used, total or 0.0, width)
    text.append(f" {used:.1f}" + (f"/{total:.0f}" if total else "") + " GiB")
    return text


class MemoryPanel(Vertical):
    DEFAULT_CSS = """
    MemoryPanel { width: 1fr; min-width: 24; border: round $primary-darken-2; padding: 0 1; }
    MemoryPanel Sparkline { height: 2; }
    MemoryPanel #mem-nvml { height: 1; }
    MemoryPanel.-no-nvml #mem-nvml, MemoryPanel.-no-nvml #mem-nvml-label { display: none; }
    MemoryPanel.-empty Sparkline, MemoryPanel.-empty .label { display: none; }
    """

    def compose(self) -> ComposeResult:
        self.border_title = "memory"
        self.add_class("-empty")
        yield Static(Text("no samples yet", style="dim"), id="mem-text")
        yield Static(Text("allocated", style="dim"), id="mem-main-label", classes="label")
        yield Sparkline([], id="mem-main")
        yield Static(Text("GPU used (NVML)", style="dim"), id="mem-nvml-label", classes="label")
        yield Sparkline([], id="mem-nvml")

    def reset(self) -> None:
        self.main: list[float] = []
        self.nvml: list[float] = []
        self.query_one("#mem-text", Static).update(Text("no samples yet", style="dim"))
        self.query_one("#mem-main", Sparkline).data = []
        self.query_one("#mem-nvml", Sparkline).data = []
        self.add_class("-empty")

    def add(self, m: MemorySample) -> None:
        if not hasattr(self, "main"):
            self.reset()
        text = Text()
        if m.torch_allocated_gib is not None:
            text.append(f"torch {m.torch_allocated_gib:.2f} GiB", style="bold")
            if m.torch_peak_gib is not None:
                text.append(f"\npeak  {m.torch_peak_gib:.2f} GiB")
            self.main.append(m.torch_allocated_gib)
        elif m.process_rss_gib is not None:
            text.append(f"RAM {m.process_rss_gib:.2f} GiB", style="bold")
            self.main.append(m.process_rss_gib)
        label = "torch allocated" if m.torch_allocated_gib is not None else "process RAM"
        self.query_one("#mem-main-label", Static).update(Text(label, style="dim"))
        if m.gpus_used_gib:  # a data-parallel run: one bar per GPU (NVML, whole device)
            ids = m.gpu_ids or list(range(len(m.gpus_used_gib)))  # NVML's numbers: a run on GPUs 1,3 says so
            for i, used in zip(ids, m.gpus_used_gib):
                text.append(f"\nGPU{i} ")
                text.append_text(gpu_bar(used, m.nvml_total_gib))
            self.nvml.append(m.nvml_used_gib) if m.nvml_used_gib is not None else None
        elif m.nvml_used_gib is not None:
            total = f" / {m.nvml_total_gib:.1f}" if m.nvml_total_gib else ""
            which = f"{m.gpu_ids[0]:<2}" if m.gpu_ids else "  "
            text.append(f"\nGPU {which}{m.nvml_used_gib:.1f}{total} GiB")
            self.nvml.append(m.nvml_used_gib)
        self.query_one("#mem-text", Static).update(text)
        self.query_one("#mem-main", Sparkline).data = list(self.main)
        self.query_one("#mem-nvml", Sparkline).data = list(self.nvml)
        self.set_class(not self.nvml, "-no-nvml")
        self.remove_class("-empty")


class TrainingPanel(Vertical):
    DEFAULT_CSS = """
    TrainingPanel { padding: 0 1; }
    TrainingPanel #run-status { height: 1; }
    TrainingPanel #run-progress { height: 1; display: none; }
    TrainingPanel.-started #run-progress { display: block; }
    TrainingPanel #run-progress Bar { width: 1fr; }
    TrainingPanel #run-metrics { height: auto; }
    TrainingPanel #run-charts { height: 2fr; min-height: 6; }
    TrainingPanel LossChart { width: 2fr; }
    TrainingPanel #run-summary { display: none; height: auto; border: round $success; padding: 0 1; }
    TrainingPanel #run-summary.-failed { border: round $error; }
    TrainingPanel.-done #run-summary { display: block; }
    /* a finished run's summary (its paths wrap at 80 columns) and its keys come before a tall chart */
    TrainingPanel.-done #run-charts { min-height: 3; }
    TrainingPanel.-done #run-log { min-height: 3; }
    TrainingPanel #run-log { height: 1fr; min-height: 4; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = "idle"
        self.finished: Finished | None = None
        self.scored: HeldOutScored | None = None  # the after-run check, sent just before Finished
        self.failure: str = ""
        self.step = 0
        self.total_steps = 0
        self.runs = 0
        self.output_dir = ""
        self._eval_loss: float | None = None
        self._last_step: StepLogged | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("No run yet: press t to train with the chosen preset.", style="dim"), id="run-status")
        yield ProgressBar(total=None, show_eta=False, id="run-progress")
        yield Static("", id="run-metrics")
        with Horizontal(id="run-charts"):
            yield LossChart(id="loss-chart")
            yield MemoryPanel(id="memory")
        yield Static("", id="run-summary")
        log = RichLog(id="run-log", wrap=True, markup=False, max_lines=5000)
        log.border_title = "log"
        yield log

    # -- helpers -------------------------------------------------------------------------------------------
    def log_line(self, text: str | Text, style: str = "") -> None:
        self.query_one(RichLog).write(text if isinstance(text, Text) else Text(text, style=style))

    def status(self, text: str | Text) -> None:
        self.query_one("#run-status", Static).update(text if isinstance(text, Text) else Text(text))

    @property
    def running(self) -> bool:
        return self.state in ("running", "stopping")

    # -- the run's life ------------------------------------------------------------------------------------
    def start(self, preset: str, dataset: str, output_dir: str, resume: bool = False, attach: str = "") -> None:
        """A run begins (or, with `attach`, a run that is already going is followed: `attach` says whose)."""
        self.runs += 1
        self.state, self.finished, self.failure, self.scored = "running", None, "", None
        self.step, self.total_steps, self.output_dir = 0, 0, output_dir
        self._eval_loss: float | None = None
        self._last_step: StepLogged | None = None
        self.remove_class("-done")
        self.add_class("-started")
        self.query_one("#run-summary").remove_class("-failed")
        self.query_one(LossChart).reset()
        self.query_one(MemoryPanel).reset()
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#run-metrics", Static).update("")
        if attach:
            self.log_line(f"── run {self.runs}: attached to the run in {output_dir} ({attach})", "bold")
            self.status(f"attaching to run {self.runs}: replaying its events…")
            return
        what = "resuming" if resume else "starting"
        self.log_line(f"── run {self.runs}: {what} preset {preset} on {dataset} → {output_dir}", "bold")
        self.status(f"{what} run {self.runs}…")

    def idle_hint(self, preset: str, dataset: str, output_dir: str) -> None:
        if self.state == "idle":
            self.status(Text.assemble("No run yet: ", ("t", "bold reverse"), f" trains preset {preset} on {dataset} → "
                                      f"{output_dir}", style="dim"))

    def stopping(self) -> None:
        self.state = "stopping"
        self.status(Text("stopping… finishing the current step, then saving the adapter and a resumable "
                         "checkpoint", style="bold yellow"))
        self.log_line("stop requested: the adapter and a resumable checkpoint are saved first", "yellow")

    def ended(self, error: BaseException | None = None) -> None:
        """The worker is over. Shows `error` when the run raised without sending `Failed` first."""
        if error is not None and self.state != "failed":
            if isinstance(error, TrainerError):
                self.fail(error.message, error.hint, error.problems)
            else:
                from ..messages import keep_trace

                self.fail(f"unexpected {type(error).__name__}: {error}", keep_trace(error))
        elif self.state in ("running", "stopping"):  # returned without Finished: still done
            self.state = "finished"
            self.status("run ended")

    def fail(self, message: str, hint: str = "", problems: list | None = None) -> None:
        self.state, self.failure = "failed", message
        self.status(Text(f"failed: {message}", style="bold red"))
        summary = self.query_one("#run-summary", Static)
        summary.update(failure_text(message, hint, problems))
        summary.add_class("-failed")
        self.add_class("-done")
        self.log_line(f"failed: {message}" + (f" (hint: {hint})" if hint else ""), "bold red")

    # -- events --------------------------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, StepLogged):
            self._step(event)
        elif isinstance(event, MemorySample):
            self.query_one(MemoryPanel).add(event)
        elif isinstance(event, EvalLogged):
            self.query_one(LossChart).add_eval(event.step, event.eval_loss)
            self.log_line(f"step {event.step}: eval loss {loss_text(event.eval_loss)}", "yellow")
            self._eval_loss = event.eval_loss
            self._metrics()
        elif isinstance(event, Phase):
            self.status(f"{event.name}… {event.detail}".rstrip())
            self.log_line(f"▶ {event.name}" + (f": {event.detail}" if event.detail else ""), "cyan")
        elif isinstance(event, DownloadProgress):  # the first model download: bytes, rate, ETA and the bar
            self.status(Text.assemble(("downloading ", "bold"), event.repo_id, "  ", download_line(event)))
            self.query_one(ProgressBar).update(total=max(event.total, 1), progress=event.done)
            if event.done >= event.total:
                self.log_line(f"downloaded {event.repo_id} ({download_line(event)})", "cyan")
        elif isinstance(event, Progress):  # every batch: the status line only, the log keeps the Phase line
            self.status(f"{event.phase}… {event.done:,}/{event.total:,} rows")
        elif isinstance(event, LogLine):
            style = {"warning": "yellow", "error": "bold red", "debug": "dim"}.get(event.level, "")
            self.log_line(event.message, style)
        elif isinstance(event, RunStarted):
            self._started(event)
        elif isinstance(event, CheckpointSaved):
            self.log_line(f"checkpoint saved at step {event.step}: {event.path}", "green")
        elif isinstance(event, OomRecovered):
            self.log_line(f"out of GPU memory at step {event.step}: batch {event.old_batch_size} → "
                          f"{event.new_batch_size}, grad accumulation {event.old_grad_accum} → "
                          f"{event.new_grad_accum} (same effective batch); the run goes on", "bold yellow")
        elif isinstance(event, Diverged):
            self.log_line(f"diverged at step {event.step}: {event.why}; " + (
                "stopping without saving the adapter (its weights are NaN)" if event.fatal else event.advice),
                "bold red")
        elif isinstance(event, HeldOutScored):
            self.scored = event
            self.log_line(held_out_text(event))
        elif isinstance(event, Finished):
            self._finished(event)
        elif isinstance(event, Failed):
            self.fail(event.message, event.hint, event.problems)

    def _started(self, e: RunStarted) -> None:
        self.total_steps = e.total_steps
        self.query_one(ProgressBar).update(total=e.total_steps, progress=e.resumed_from_step)
        self.query_one(LossChart).reset(e.total_steps)
        self.output_dir = e.output_dir
        resumed = f", resumed from step {e.resumed_from_step}" if e.resumed_from_step else ""
        self.log_line(f"run started on {e.device}: {e.train_rows} train rows, {e.eval_rows} eval rows, "
                      f"{e.total_steps} steps{resumed}")
        self.status(f"training on {e.device}: step {e.resumed_from_step}/{e.total_steps}")

    def _step(self, e: StepLogged) -> None:
        self.step, self.total_steps = e.step, e.total_steps
        self.query_one(ProgressBar).update(total=e.total_steps, progress=e.step)
        self.query_one(LossChart).total_steps = e.total_steps
        self.query_one(LossChart).add_train(e.step, e.loss)
        if self.state == "running":
            self.status(Text.assemble(("step ", "bold"), (f"{e.step}/{e.total_steps}", "bold"),
                                      f"  epoch {e.epoch:.2f}  elapsed {duration(e.elapsed_s)}"))
        self._last_step = e
        self._metrics()

    def _metrics(self) -> None:
        e = self._last_step
        if e is None:
            return
        metrics = Text.assemble(("loss ", "bold"), loss_text(e.loss), ("  eval ", "bold"), loss_text(self._eval_loss),
                                ("  lr ", "bold"), f"{e.lr:.2e}", ("  ", ""), (f"{e.tokens_per_s:,.0f}", "bold"),
                                " tok/s", ("  ETA ", "bold"), duration(e.eta_s) if self.running else "done")
        if e.grad_norm is not None:
            metrics.append(f"  grad norm {e.grad_norm:.2f}", style="dim")
        self.query_one("#run-metrics", Static).update(metrics)

    def _finished(self, e: Finished) -> None:
        self.finished = e
        self.state = "stopped" if e.stopped_early else "finished"
        self._metrics()
        self.output_dir = e.output_dir
        self.query_one("#run-summary", Static).update(summary_text(e, self.scored))
        self.add_class("-done")
        if e.diverged:
            self.status(Text(f"diverged: {e.diverged}", style="bold red"))
        else:
            self.status(Text("stopped: adapter saved" if e.stopped_early else "finished: adapter saved",
                             style="bold yellow" if e.stopped_early else "bold green"))
        self.log_line(f"{'stopped' if e.stopped_early else 'finished'} at step {e.steps}/{e.total_steps}; "
                      f"adapter in {e.output_dir}", "bold green")

    @property
    def adapter_dir(self) -> str | None:
        return self.finished.output_dir if self.finished else None
