"""The training run as the app drives it: start one (checks, then a thread worker calling `Engine.train`), attach
to one that is going (`Engine.attach`), draw its events, stop it, or leave it running on quit or hang-up.

`RunControl` is a mixin of `TrainerApp` (tui/app.py), which owns the panels and the events it sets up
(`stop_event`, `leave_event`); the app's one worker handler hands the run worker's end to `_run_ended`.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import work

from core.events import Failed, Finished, MemorySample, Progress, StepLogged

from .messages import EngineEvent
from .screens.confirm import ChoiceScreen, ConfirmScreen

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


def exit_on_hangup(leave: Callable[[], None], exit_gracefully: Callable[[], None], terminal_fd: int | None = None,
                   grace_s: float = 3.0, poll_s: float = 1.0) -> None:
    """When the terminal is gone (SSH dropped, tmux session killed): `leave()` at once, then `exit_gracefully()`,
    and end the process after `grace_s` seconds whatever happens.

    Two ways to learn it, neither through the event loop, which a dead terminal can block: Textual's writer thread
    dies on the first write to a closed terminal, its queue (30 writes) fills, and the next write blocks the loop for
    good (asyncio's `add_signal_handler` then never ran its callback: the app stayed behind, its input thread
    spinning a core on end-of-file reads).
    - SIGHUP, by a plain signal handler: Python runs it in the main thread even while that waits on the queue.
    - The terminal itself, asked every `poll_s` seconds by a daemon thread (`terminal_fd`): no SIGHUP comes when the
      app is not the session's leader (`make app` in tmux: the kernel hangs up make only), but the terminal's
      foreground group can no longer be read once it is hung up."""
    done = threading.Event()

    def hang_up() -> None:
        if done.is_set():
            return
        done.set()
        leave()
        deadline = threading.Timer(grace_s, os._exit, args=(0,))
        deadline.daemon = True
        deadline.start()
        try:
            exit_gracefully()
        except Exception:  # noqa: BLE001 - the deadline ends the process anyway
            pass

    signal.signal(signal.SIGHUP, lambda signum, frame: hang_up())
    if terminal_fd is None:
        return
    try:
        os.tcgetpgrp(terminal_fd)
    except OSError:
        return  # not a terminal (piped): nothing to watch

    def watch() -> None:
        while not done.wait(poll_s):
            try:
                os.tcgetpgrp(terminal_fd)
            except OSError:  # EIO: hung up
                hang_up()

    threading.Thread(target=watch, name="terminal-watch", daemon=True).start()


class RunControl:
    """The run's keys (t, s, q) and its lifecycle, for `TrainerApp`."""

    def watch_hangup(self) -> None:
        """A hang-up stops following the run (it goes on in its own session) and exits at once (exit_on_hangup)."""
        import sys

        loop = asyncio.get_running_loop()
        # the run's leave_event is asked for when the hang-up comes: each run started or attached gets a new one
        exit_on_hangup(lambda: self.leave_event.set(), lambda: loop.call_soon_threadsafe(self.exit),
                       terminal_fd=sys.__stdout__.fileno() if sys.__stdout__ is not None else None)

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

    def _run_ended(self, error: BaseException | None) -> None:
        """The run's worker ended (done, failed, or cancelled): show how, and quit if a stop was asked to."""
        self._flush_events()
        if error is not None and not hasattr(error, "render"):
            trace = "".join(traceback.format_exception(error)).rstrip()
            self.training.log_line(Text(trace, style="red"))
        self.training.ended(error)
        self.sub_title = self.idle_sub_title
        self.refresh_bindings()
        if self.quit_after_stop:
            self.exit()

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
