"""Runs that outlive the terminal: one owner of the run folder (the lock), following a run through its events.jsonl,
leaving and coming back (TUI and CLI), a damaged run.json everywhere, timed checkpoints.

The fast tests use real locks held by real processes and real files; the slow ones (marked) run the real engine on
a tiny model in detached processes, start the TUI under a pseudo-terminal and kill it with signals.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import events as ev
from core.cli import main as cli_main
from core.errors import InputError, TrainerError
from core.presets import PRESETS
from core.runs import output
from core.runs.journal import Journal
from core.runs.workers import follow
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)


PY_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def hold_folder(out: Path) -> subprocess.Popen:
    """Another process that owns `out` as a run does (core.runs.output.prepare), with one metric line, until killed."""
    code = ("import sys, time; from core.runs.output import prepare\n"
            f"d = prepare({str(out)!r}, overwrite=False, resume=False)\n"
            "(d.work / 'metrics.jsonl').write_text('{}\\n'); print('ready', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=PY_ENV)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_live_folder_is_refused_with_its_pid_and_never_emptied_then_a_stale_one_is_taken_over(tmp_path):
    out = tmp_path / "adapter"
    holder = hold_folder(out)
    try:
        owner = output.inspect(out)
        assert owner.live and owner.pid == holder.pid
        for overwrite in (False, True):  # not even --overwrite empties a folder a live run holds
            with pytest.raises(InputError) as info:
                output.prepare(out, overwrite=overwrite, resume=False)
            text = info.value.render()
            assert f"pid {holder.pid}" in text and f"genaptitude-trainer attach {out}" in text
        assert (tmp_path / "adapter.partial" / "metrics.jsonl").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert not output.inspect(out).live  # kill -9 drops the lock with the process
    said: list[str] = []
    dirs = output.prepare(out, overwrite=False, resume=False, say=said.append)
    try:
        assert len(said) == 1 and said[0].startswith(f"taking over {out}.partial: its run (pid {holder.pid}, started ")
        assert said[0].endswith(") is no longer running")
        assert output.inspect(out).pid == os.getpid() and output.inspect(out).live
    finally:
        dirs.lock.release()


def test_the_cli_refuses_a_second_train_into_a_held_folder(small_dataset, tmp_path):
    out = tmp_path / "adapter"
    holder = hold_folder(out)
    try:
        r = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(small_dataset), "--preset", "cpu",
                            "--output", str(out)], capture_output=True, text=True, env=PY_ENV, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2, r.stderr
    assert f"pid {holder.pid}" in r.stderr and f"genaptitude-trainer attach {out}" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_apps_launcher_reports_a_refusal_before_the_run_owns_a_folder(small_dataset, tmp_path):
    """The app's run process is refused (a live run holds the folder): the app gets the Failed event, pid and all."""
    from core.presets import config_for
    from tui.bridge import ProcessEngine

    out = tmp_path / "adapter"
    holder = hold_folder(out)
    got: list = []
    try:
        with pytest.raises(TrainerError) as info:
            ProcessEngine().train(config_for("cpu"), str(small_dataset), str(out), on_event=got.append,
                                  stop_event=threading.Event(), overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    assert f"pid {holder.pid}" in info.value.message and "attach" in info.value.hint
    assert [type(e) for e in got] == [ev.Failed] and got[0].message == info.value.message


def _damaged(folder: Path, adapter: bool = True, metrics: bool = False) -> Path:
    folder.mkdir(parents=True)
    if adapter:
        (folder / "adapter_config.json").write_text('{"base_model_name_or_path": "x"}')
        (folder / "adapter_model.safetensors").write_bytes(b"w")
    if metrics:
        (folder / "metrics.jsonl").write_text(ev.StepLogged(1, 2, 0.5, 2.0, 1e-3, None, 10.0, 1.0, 1.0).to_json() + "\n")
    (folder / "run.json").write_text('{"config": {"model": "x", ')  # cut short, as a full disk leaves it
    return folder


def test_a_damaged_run_json_is_one_sentence_and_exit_2_everywhere(small_dataset, tmp_path, capsys):
    run = _damaged(tmp_path / "run", metrics=True)
    sentence = f"error: {run / 'run.json'} is not valid JSON (line 1, column 27: Expecting property name"
    for argv in (["evaluate", "--adapter", str(run), "--dataset", str(small_dataset)],
                 ["report", str(run)],
                 ["merge", "--adapter", str(run), "--out", str(tmp_path / "merged")],
                 ["runs", str(run)]):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(sentence), (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err  # the sentence and a hint
    assert not (tmp_path / "merged").exists()
    from core.runs.history import load_run

    record = load_run(run)  # the TUI's history lists it with the same sentence instead of failing
    assert record.state == "unreadable" and record.error == sentence.removeprefix("error: ") + \
        " enclosed in double quotes)"


# -- following a run through its folder --------------------------------------------------------------------------
def _writer(out: Path, events: list, gate: threading.Event, finish: bool):
    """A stand-in run in this process: owns the folder, writes events (one line in two halves), then ends."""
    dirs = output.prepare(out, overwrite=False, resume=False)
    journal = Journal(lambda e: None)
    journal.open(dirs.events)

    def run():
        for i, event in enumerate(events):
            if i == 2:  # a line caught half-written
                line = event.to_json() + "\n"
                with open(dirs.events, "a") as fh:
                    fh.write(line[:10])
                    fh.flush()
                    time.sleep(0.3)
                    fh.write(line[10:])
            else:
                journal(event)
            gate.wait(5) if i == 3 else time.sleep(0.05)
        if finish:
            journal(ev.Finished(str(out), 4, 4, 1.0, None, False, 1.0))
        journal.close()
        dirs.lock.release()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


STEPS = [ev.StepLogged(s, 4, s / 4, 2.0 / s, 1e-3, None, 100.0, float(s), 4.0 - s) for s in (1, 2, 3, 4)]


def test_follow_replays_then_tails_and_returns_the_finish(tmp_path):
    gate = threading.Event()
    thread = _writer(tmp_path / "a", STEPS, gate, finish=True)
    got: list = []
    done = follow(tmp_path / "a", lambda e: (got.append(e), gate.set() if len(got) == 4 else None), poll=0.02)
    thread.join()
    assert [e.step for e in got if isinstance(e, ev.StepLogged)] == [1, 2, 3, 4]  # the cut line read whole
    assert isinstance(done, ev.Finished) and got[-1] == done


def test_follow_says_when_the_process_ended_without_finishing_and_leaving_returns_at_once(tmp_path):
    gate = threading.Event()
    gate.set()
    thread = _writer(tmp_path / "b", STEPS, gate, finish=False)
    with pytest.raises(TrainerError) as info:
        follow(tmp_path / "b", lambda e: None, poll=0.02)
    thread.join()
    assert "ended without finishing" in info.value.message and "--resume" in info.value.hint
    leave = threading.Event()
    leave.set()
    assert follow(tmp_path / "b", lambda e: None, leave_event=leave) is None


# -- timed checkpoints -----------------------------------------------------------------------------------------
def test_gpu_presets_checkpoint_on_a_time_basis_and_the_callback_asks_for_it(tmp_path):
    from transformers import TrainerControl, TrainerState

    from core.train.callbacks import EventCallback, TokenCounter

    for name, preset in PRESETS.items():
        minutes = preset.config.save_every_minutes
        assert (minutes == 0) if name == "cpu" else (10 <= minutes <= 15), name
        assert "save_every_minutes" in preset.reasons, name  # the reason beside the value
    cb = EventCallback(lambda e: None, threading.Event(), TokenCounter(lambda rows: rows), tmp_path / "m.jsonl",
                       {"config": {"save_every_minutes": 15.0}}, "cpu")
    state = TrainerState(global_step=1, max_steps=100)
    control = TrainerControl()
    cb.on_step_end(None, state, control)
    assert not control.should_save
    cb.last_save -= 15 * 60 + 1  # a quarter of an hour of training since the last save
    state.global_step = 2
    cb.on_step_end(None, state, control)
    assert control.should_save
    cb.on_save(type("A", (), {"output_dir": str(tmp_path)})(), type("S", (), {"global_step": 9})(), control)
    control = TrainerControl()
    state.global_step = 3
    cb.on_step_end(None, state, control)
    assert not control.should_save  # the clock starts again at each save


# -- the app: offered to attach, leaving ---------------------------------------------------------------------

@pytest.mark.anyio
async def test_the_app_offers_to_attach_to_a_live_run_and_s_stops_it(tmp_path):
    from types import SimpleNamespace

    from tests.tui_fakes import NO_GPU, FakeEngine, screen_text, settle, wait_until
    from tui.app import TrainerApp
    from tui.screens.confirm import ChoiceScreen

    live = SimpleNamespace(output=tmp_path / "adapter", steps=3, total_steps=100, preset="cpu",
                           owner=output.Owner(4242, os.uname().nodename, "2026-01-02T03:04:05+0000", live=True))

    class Attachable(FakeEngine):
        attached: list = []

        def live_runs(self, output_dir):
            return [live]

        def attach(self, output_dir, *, on_event, stop_event, leave_event):
            self.attached.append(output_dir)
            for step in range(1, 5):
                on_event(ev.StepLogged(step, 100, step / 100, 2.0, 1e-3, None, 900.0, 3.0 * step, 300.0))
            assert stop_event.wait(10)
            on_event(ev.Finished(str(live.output), 4, 100, 2.0, None, True, 12.0, f"{live.output}/checkpoints/c-4"))
            return None

    engine = Attachable(NO_GPU)
    app = TrainerApp(engine, output=str(tmp_path / "other"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        text = screen_text(app)
        assert "A training run is going" in text and "step 3/100" in text and "pid 4242" in text
        await pilot.press("a")
        await wait_until(pilot, lambda: app.training.step == 4)
        assert engine.attached == [str(live.output)] and app.output_dir == str(live.output)
        assert "900 tok/s" in screen_text(app)  # the run's own numbers, as if the app had never left
        await pilot.press("s")
        await wait_until(pilot, lambda: app.training.state == "stopped")
