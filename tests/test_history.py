"""Run history: finding past runs on disk (core/runs/history.py); the `h` screen is tests/test_tui_history.py.

Run folders come from the real engine (a tiny CPU model, a finished and a stopped run) and, for fixed numbers, are
written here with the engine's own serialisers (`core.train.engine.run_record`, the events' `to_json`), so the keys are
exactly the engine's. GENAPTITUDE_TRAINER_HOME points into tmp_path: nothing touches the real home.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core import events as ev
from core.runs import history
from core.runs.history import MemoryPoint, find_runs, load_run, remember_run
from tests.tinymodels import train_tiny

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


# -- core.runs.history --------------------------------------------------------------------------------------------
def test_runs_are_found_read_and_sorted_newest_first(runs, tmp_path):
    found = find_runs(runs / "adapter", cwd=tmp_path)
    by_name = {r.path.name: r for r in found.runs}
    assert [r.path.name for r in found.runs] == ["adapter.partial", "stopped", "finished", "broken"]
    assert found.folders == [runs, tmp_path] and found.index == tmp_path / "home" / "runs.jsonl"

    fin = by_name["finished"]
    assert (fin.state, fin.preset, fin.model, fin.steps, fin.total_steps) == (
        "finished", "cpu", "smollm2-135m-instruct", 4, 4)
    assert (fin.train_loss, fin.eval_loss, fin.runtime_s, fin.tokens_per_s) == (1.25, 1.4, 120.0, 1237.0)
    assert fin.started == datetime(2025, 3, 2, 9, 28, tzinfo=timezone.utc)  # finished_at − runtime
    assert fin.train_curve == [(1, 2.5), (2, 2.0), (3, 1.6), (4, 1.25)]
    assert fin.eval_curve == [(2, 1.9), (4, 1.4)]
    assert fin.memory_label == "process RAM" and fin.memory_curve == [(1, 2.01), (2, 2.02), (3, 2.03), (4, 2.04)]
    assert fin.nvml_curve == [] and fin.peak_gib == 2.04 and fin.checkpoint is None and fin.error == ""
    assert fin.dataset == str(tmp_path / "dataset.jsonl")

    stop = by_name["stopped"]
    assert (stop.state, stop.preset, stop.model, stop.steps, stop.total_steps) == (
        "stopped", "8gb", "Qwen/Qwen2.5-1.5B-Instruct", 3, 10)
    assert stop.checkpoint == runs / "stopped" / "checkpoints" / "checkpoint-3"
    assert stop.memory[0] == MemoryPoint(1, 1.1, 1.6, 3.1, 2.01)
    assert stop.memory_label == "torch allocated" and stop.memory_curve == [(1, 1.1), (2, 1.2), (3, 1.3)]
    assert stop.nvml_curve == [(1, 3.1), (2, 3.2), (3, 3.3)] and stop.peak_gib == pytest.approx(1.8)
    assert stop.eval_loss is None and stop.train_loss == 2.5

    part = by_name["adapter.partial"]  # no run.json yet: numbers from the metrics, names from the index
    assert (part.state, part.preset, part.model, part.steps, part.total_steps) == (
        "unfinished", "t4-fp16", "Qwen/Qwen2.5-0.5B-Instruct", 5, 20)
    assert (part.train_loss, part.eval_loss, part.runtime_s, part.tokens_per_s) == (1.7, 2.0, 50.0, 905.0)
    assert part.started == datetime(2025, 3, 4, 8, 15, tzinfo=timezone.utc)
    assert part.checkpoint == runs / "adapter.partial" / "checkpoints" / "checkpoint-4"
    assert part.error == ""

    bad = by_name["broken"]  # says what is wrong instead of raising; the curve is still there
    assert bad.state == "unreadable" and bad.error.endswith(
        "broken/run.json is not valid JSON (line 1, column 2: Expecting property name enclosed in double quotes)")
    assert bad.train_curve == [(1, 4.0), (2, 3.5)] and bad.steps == 2 and bad.train_loss == 3.5
    assert bad.started == datetime(2025, 3, 1, 11, 59, 50, tzinfo=timezone.utc)  # metrics written − elapsed


def test_each_folder_is_listed_once_whichever_way_it_was_found(runs, tmp_path):
    """The output's siblings, the working folder and the index all reach runs/; a symlink reaches it again."""
    (tmp_path / "link").symlink_to(runs / "finished")
    found = find_runs(runs / "adapter", cwd=runs)
    assert sorted(r.path.name for r in found.runs) == ["adapter.partial", "broken", "finished", "stopped"]
    found = find_runs(tmp_path / "link" / "x", cwd=tmp_path / "link")  # the folder itself, through a link
    assert [r.path for r in found.runs].count(runs / "finished") == 1


def test_the_index_alone_finds_runs_elsewhere_and_skips_vanished_and_corrupt_entries(runs, tmp_path):
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    found = find_runs(nowhere / "adapter", cwd=nowhere)
    assert [r.path.name for r in found.runs] == ["adapter.partial", "finished"]  # gone/adapter vanished
    assert found.where() == "nowhere/ and the index home/runs.jsonl"


def test_missing_index_and_unwritable_home_are_not_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_runs(tmp_path / "a", cwd=tmp_path, index=tmp_path / "no" / "runs.jsonl").runs == []
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GENAPTITUDE_TRAINER_HOME", str(blocker))
    remember_run(tmp_path / "a", "cpu")  # cannot write the index: silently nothing
    assert blocker.read_text() == "not a folder"
    monkeypatch.setenv("GENAPTITUDE_TRAINER_HOME", str(tmp_path / "h"))
    remember_run(tmp_path / "a", "cpu", "m", "d.jsonl")
    entry = json.loads((tmp_path / "h" / "runs.jsonl").read_text())
    assert entry["path"] == str(tmp_path / "a") and (entry["preset"], entry["model"]) == ("cpu", "m")


def test_index_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPTITUDE_TRAINER_HOME", str(tmp_path / "g"))
    assert history.index_path() == tmp_path / "g" / "runs.jsonl"
    monkeypatch.delenv("GENAPTITUDE_TRAINER_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert history.index_path() == tmp_path / "xdg" / "genaptitude-trainer" / "runs.jsonl"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert history.index_path() == tmp_path / "user" / ".local" / "state" / "genaptitude-trainer" / "runs.jsonl"


def test_a_run_json_that_is_not_an_object_or_a_folder_without_metrics(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "run.json").write_text("[1, 2]")
    record = load_run(folder)
    assert record.state == "unreadable" and "holds a JSON list" in record.error
    assert record.train_curve == [] and record.steps == 0


def test_history_loads_no_torch_and_core_history_no_textual():
    from tests.test_tui_imports import HEAVY, loaded_after

    assert not loaded_after("import core.runs.history") & {"textual", "rich", *HEAVY}
    assert not loaded_after("import tui.screens.history") & set(HEAVY)


# -- the real engine ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_runs(tiny_model_dir, small_dataset, tmp_path_factory):
    """A finished run whose start the index records, and a stopped one whose home cannot be written to."""
    root = tmp_path_factory.mktemp("real")

    def run(out: Path, home: Path, stop_at: int | None, max_steps: int) -> list:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GENAPTITUDE_TRAINER_HOME", str(home))
            return train_tiny(tiny_model_dir, small_dataset, out, stop_at=stop_at, max_steps=max_steps,
                              eval_every=2)[1]

    (root / "blocked").write_text("a file where the home folder should be")
    finished = run(root / "a" / "finished", root / "home", None, 4)
    stopped = run(root / "b" / "stopped", root / "blocked", 2, 5)
    return root, finished, stopped


def _expect(record, got) -> None:
    """The record read back from disk says what the engine's events said during the run."""
    done = next(e for e in got if isinstance(e, ev.Finished))
    steps = [e for e in got if isinstance(e, ev.StepLogged)]
    assert (record.steps, record.total_steps, record.train_loss, record.eval_loss) == (
        done.steps, done.total_steps, done.train_loss, done.eval_loss)
    assert record.runtime_s == round(done.runtime_s, 2)
    assert record.train_curve == [(e.step, e.loss) for e in steps]
    assert record.eval_curve == [(e.step, e.eval_loss) for e in got if isinstance(e, ev.EvalLogged)]
    assert record.memory_curve == [(e.step, e.process_rss_gib) for e in got if isinstance(e, ev.MemorySample)]
    assert record.tokens_per_s == steps[-1].tokens_per_s
    assert record.preset == "cpu" and record.model.endswith("tiny-llama0")
    assert abs((datetime.now(timezone.utc) - record.started).total_seconds()) < 600


def test_real_runs_are_found_with_the_numbers_the_engine_reported(real_runs, small_dataset):
    root, finished, stopped = real_runs
    index = root / "home" / "runs.jsonl"
    entries = [json.loads(line) for line in index.read_text().splitlines()]
    assert [e["path"] for e in entries] == [str(root / "a" / "finished")]  # the stopped run's home was a file
    assert entries[0]["preset"] == "cpu" and entries[0]["dataset"] == str(small_dataset)

    elsewhere = root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    found = find_runs(elsewhere / "x", cwd=elsewhere, index=index)  # through the index only
    assert [r.path for r in found.runs] == [root / "a" / "finished"]
    run = found.runs[0]
    assert run.state == "finished" and run.checkpoint is None and len(run.eval_curve) >= 2
    _expect(run, finished)

    found = find_runs(root / "b" / "adapter", cwd=elsewhere, index=index)  # the stopped one: next to the output
    run = next(r for r in found.runs if r.path.name == "stopped")
    assert run.state == "stopped" and run.steps == 2
    assert run.checkpoint == root / "b" / "stopped" / "checkpoints" / "checkpoint-2"
    _expect(run, stopped)


def test_resumable_is_what_train_resume_would_continue(runs, tmp_path):
    """One answer (RunRecord.resumable, from core.runs.output.resume_point) for `runs` and the TUI: a stopped run's
    or a dead run's checkpoint, never a finished run's leftover or a run whose resume would take another folder's."""
    from tests.runfolders import write_run

    assert load_run(runs / "stopped").resumable and load_run(runs / "adapter.partial").resumable
    assert not load_run(runs / "finished").resumable
    leftover = write_run(tmp_path / "done", [2.0, 1.0], checkpoint=2)  # finished, its checkpoint left behind
    assert load_run(leftover).checkpoint is not None and not load_run(leftover).resumable
    # a stopped run with a newer unfinished attempt beside it: --resume takes the attempt's checkpoint
    write_run(tmp_path / "again", [3.0, 2.0], stopped=True, checkpoint=2)
    write_run(tmp_path / "again.partial", [3.0, 2.0, 1.5], run_json=False, checkpoint=3)
    assert not load_run(tmp_path / "again").resumable and load_run(tmp_path / "again.partial").resumable
