"""Runs that outlive the terminal, for real: the real engine on a tiny model in detached processes, the TUI started
under a pseudo-terminal and killed with signals, a new app and the CLI attaching and stopping, a dead run offered
for resume. The folder's lock and following its events on their own are tests/test_runs.py's."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from core.runs import output
from tests.test_runs import PY_ENV, hold_folder
from tests.tinymodels import BUNDLED_DATASET

pytestmark = pytest.mark.slow  # real processes and a real model: seconds each (make test-fast skips)



# -- the real thing ------------------------------------------------------------------------------------------
def _events(out: Path) -> list[dict]:
    for folder in (output.work_of(out), out):
        if (folder / output.EVENTS).is_file():
            return list(output.metrics_rows(folder / output.EVENTS))
    return []


def _wait(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_in_background(master: int) -> bytearray:
    """What a process writes to its pseudo-terminal, read on a thread as it comes (the app blocks on a full terminal
    otherwise); the buffer grows until the terminal closes."""
    screen = bytearray()

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    threading.Thread(target=drain, daemon=True).start()
    return screen


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_the_run_outlives_the_app(sig, tiny_model_dir, tmp_path):
    """The TUI under a pseudo-terminal starts a run with t; the app is then killed (a hang-up, or -9). The app is
    gone at once, and the run goes on to save its adapter. The whole bundled export (108 steps of the tiny model,
    seconds): on 40 rows a one-thread run ended before the app did, and there was nothing left to outlive it."""
    out = tmp_path / "adapter"
    master, slave = pty.openpty()
    app = subprocess.Popen([sys.executable, "-m", "tui", "--dataset", str(BUNDLED_DATASET), "--preset", "cpu",
                            "--model", str(tiny_model_dir), "--output", str(out)],
                           stdin=slave, stdout=slave, stderr=slave, env={**PY_ENV, "TERM": "xterm-256color"},
                           start_new_session=True, cwd=tmp_path)
    os.close(slave)
    screen = read_in_background(master)
    try:
        _wait(lambda: b"Train" in screen and b"rows" in screen, 120, "the first screen")
        time.sleep(1.0)
        os.write(master, b"t")
        _wait(lambda: any(e["event"] == "step" for e in _events(out)), 300, "the first step")
        assert output.inspect(out).live and not any(e["event"] == "finished" for e in _events(out))
        run_pid = output.inspect(out).pid
        assert run_pid != app.pid
        app.send_signal(sig)
        app.wait(timeout=10)  # the app does not stay behind without its terminal
    finally:
        if app.poll() is None:
            app.kill()
        os.close(master)
    assert output.inspect(out).live, "the run went on without the app"
    _wait(lambda: not output.inspect(out).live, 300, "the run to end")
    kinds = [e["event"] for e in _events(out)]
    assert kinds[-1] == "finished", kinds[-5:]
    assert output.is_adapter(out) and (out / "run.json").is_file() and (out / output.LOG).is_file()
    assert json.loads((out / "run.json").read_text())["stopped_early"] is False


def test_a_hang_up_ends_the_app_even_when_its_loop_is_stuck_on_a_dead_terminal(tmp_path):
    """The app's main thread blocked for good, as a dead terminal leaves it (Textual's writer thread died on the
    first failed write, and the next write waits on its full queue): SIGHUP still leaves the run and ends the
    process within the grace time. With the event loop's signal handler it stayed behind, spinning a core."""
    marker = tmp_path / "left"
    script = (
        "import queue, sys\n"
        "from tui.run_control import exit_on_hangup\n"
        f"exit_on_hangup(lambda: open({str(marker)!r}, 'w').close(), lambda: None, grace_s=0.5)\n"
        "full = queue.Queue(1)\n"
        "full.put('a')\n"
        "print('blocked', flush=True)\n"
        "full.put('b')  # no reader: blocks forever, as the app's last write did\n"
        "sys.exit(3)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=PY_ENV)
    try:
        assert proc.stdout.readline().strip() == "blocked"
        time.sleep(0.2)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=10) == 0  # the grace deadline's exit, not the script's
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.exists()  # it left the run before anything else


def test_a_terminal_closed_without_a_hang_up_signal_ends_the_app_too(tmp_path):
    """No SIGHUP reaches the app when it is not the terminal session's leader (`make app` in tmux: the kernel hangs
    up make only). The app's terminal watch sees the terminal gone and ends it, its main thread blocked as before."""
    marker = tmp_path / "left"
    script = (
        "import queue, sys\n"
        "from tui.run_control import exit_on_hangup\n"
        f"exit_on_hangup(lambda: open({str(marker)!r}, 'w').close(), lambda: None, terminal_fd=1, grace_s=0.5,\n"
        "               poll_s=0.2)\n"
        "import os, signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as if no hang-up signal came\n"
        "full = queue.Queue(1)\n"
        "full.put('a')\n"
        "os.write(1, b'blocked\\n')  # one write: print's two could meet the closed terminal (EIO, exit 1)\n"
        "full.put('b')\n"
        "sys.exit(3)\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=slave, stdout=slave, stderr=slave, env=PY_ENV,
                            start_new_session=True,  # the terminal its controlling one, as a tmux pane's is
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"blocked" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 1024)
        assert b"blocked" in seen and proc.poll() is None
        os.close(master)  # the terminal is gone
        master = None
        assert proc.wait(timeout=10) == 0
    finally:
        if master is not None:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert marker.exists()


@pytest.mark.slow
@pytest.mark.anyio
async def test_come_back_attach_from_a_new_app_and_the_cli_and_stop(tiny_model_dir, small_dataset, tmp_path):
    """A run started the app's way (detached) goes on; a second train into its folder is refused; `runs` lists it;
    `attach` in a terminal and a new app both follow it; s in the app stops it with its adapter and a checkpoint,
    and the CLI follower sees the same end."""
    from tests.tui_fakes import screen_text, wait_until
    from tui.app import TrainerApp
    from tui.bridge import ProcessEngine
    from tui.screens.confirm import ChoiceScreen
    from core.presets import config_for
    from core.runs.workers import start_run

    out = tmp_path / "adapter"
    launch = start_run(config_for("cpu", model=str(tiny_model_dir), max_steps=5000), str(small_dataset), str(out))
    _wait(lambda: any(e["event"] == "step" for e in _events(out)), 300, "the first step")
    second = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(small_dataset), "--preset", "cpu",
                             "--model", str(tiny_model_dir), "--output", str(out), "--overwrite"],
                            capture_output=True, text=True, env=PY_ENV, timeout=300)
    assert second.returncode == 2 and f"pid {launch.pid}" in second.stderr and "attach" in second.stderr
    listed = subprocess.run([sys.executable, "-m", "core", "runs"], capture_output=True, text=True, env=PY_ENV,
                            cwd=tmp_path, timeout=120)
    assert any(line.startswith("running") and f"pid {launch.pid}" in line for line in listed.stdout.splitlines())
    cli = subprocess.Popen([sys.executable, "-m", "core", "attach", str(out)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=PY_ENV)
    try:
        app = TrainerApp(ProcessEngine(), dataset=str(small_dataset), output=str(out), preset="cpu",
                         model=str(tiny_model_dir), refresh_interval=None, stats_delay=0, show_startup_time=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), timeout=60)
            await pilot.press("a")
            await wait_until(pilot, lambda: app.training.step >= 1, timeout=120)
            first = app.training.step
            await wait_until(pilot, lambda: app.training.step > first, timeout=120)  # live, not only the replay
            assert len(app.query_one("#loss-chart").train) >= first  # the curve so far was replayed
            await pilot.press("s")
            await wait_until(pilot, lambda: app.training.state in ("stopped", "failed"), timeout=300)
            assert app.training.state == "stopped", screen_text(app)
        stdout, stderr = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, stderr
    assert "step 1/5000" in stdout and "stopped early after" in stdout
    assert output.is_adapter(out) and output.latest_checkpoint(out / "checkpoints") is not None
    assert output.resume_point(out) is not None
    launch.proc.wait(timeout=60)


@pytest.mark.anyio
async def test_h_attaches_to_a_live_run_and_a_dead_run_is_offered_for_resume(tmp_path):
    """In `h` a run going now is listed first as running and Enter attaches to it; at start-up, a run whose
    process died in the output folder is offered for resume (core's rule), and r resumes it."""
    from tests.tui_fakes import NO_GPU, FakeEngine, screen_text, settle, wait_until
    from tui.app import TrainerApp
    from tui.screens.confirm import ChoiceScreen
    from tui.screens.history import HistoryScreen

    class Attachable(FakeEngine):
        attached: list = []

        def attach(self, output_dir, *, on_event, stop_event, leave_event):
            self.attached.append(output_dir)
            return None

    holder = hold_folder(tmp_path / "live")
    dead = tmp_path / "adapter"
    ckpt = tmp_path / "adapter.partial" / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    output.owner_path(dead).write_text(json.dumps({"pid": 999999, "host": os.uname().nodename,
                                                   "started_at": "2026-01-02T03:04:05+0000"}))
    engine = Attachable(NO_GPU)
    app = TrainerApp(engine, output=str(dead), refresh_interval=None, stats_delay=0, show_startup_time=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
            assert "The last run did not finish" in screen_text(app) and "pid 999999" in screen_text(app)
            await pilot.press("n")
            await pilot.pause()
            await pilot.press("h")
            await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.history is not None)
            assert "● running" in screen_text(app).splitlines()[4], screen_text(app)  # first row of the table
            await pilot.press("enter")
            await wait_until(pilot, lambda: engine.attached == [str(tmp_path / "live")])
            await wait_until(pilot, lambda: not app.training.running)
            app.output_dir = str(dead)
            app._find_live_runs()
            await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
            await pilot.press("r")
            await wait_until(pilot, lambda: engine.train_calls)
            assert engine.train_calls[0]["resume"] is True and engine.train_calls[0]["output"] == str(dead)
    finally:
        holder.kill()
        holder.wait()
