"""Run history: finding past runs on disk (core/runs/history.py) and the `h` screen that lists and re-plots them.

Run folders come from the real engine (a tiny CPU model, a finished and a stopped run) and, for fixed numbers, are
written here with the engine's own serialisers (`core.train.engine.run_record`, the events' `to_json`), so the keys are
exactly the engine's. GENAPTITUDE_TRAINER_HOME points into tmp_path: nothing touches the real home.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from core import events as ev
from core.runs import history
from core.presets import config_for
from core.runs.history import MemoryPoint, find_runs, load_run, remember_run
from core.train.engine import run_record
from tests.tinymodels import train_tiny
from tests.tui_fakes import NO_GPU, FakeEngine, screen_text, settle, wait_until

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


# -- run folders as the engine writes them ------------------------------------------------------------------
def write_run(folder: Path, losses: list[float], *, total: int | None = None, evals: dict[int, float] | None = None,
              gpu: bool = False, preset: str = "cpu", model: str | None = None, stopped: bool = False,
              run_json: bool = True, finished_at: str = "2025-03-02T09:30:00+0000", runtime: float = 120.0,
              rate: float = 1200.0, checkpoint: int | None = None) -> Path:
    """metrics.jsonl as EventCallback writes it (step, memory, then eval lines) and run.json from `run_record`."""
    folder.mkdir(parents=True)
    total = total or len(losses)
    evals = evals or {}
    lines = []
    for step, loss in enumerate(losses, start=1):
        lines.append(ev.StepLogged(step=step, total_steps=total, epoch=step / total, loss=loss, lr=2e-4,
                                   grad_norm=0.5, tokens_per_s=rate + step, elapsed_s=runtime * step / len(losses),
                                   eta_s=1.0).to_json())
        lines.append(ev.MemorySample(
            step=step, torch_allocated_gib=1.0 + step / 10 if gpu else None, torch_reserved_gib=2.0 if gpu else None,
            torch_peak_gib=1.5 + step / 10 if gpu else None, nvml_used_gib=3.0 + step / 10 if gpu else None,
            nvml_total_gib=8.0 if gpu else None, process_rss_gib=2.0 + step / 100).to_json())
        if step in evals:
            lines.append(ev.EvalLogged(step=step, eval_loss=evals[step]).to_json())
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if checkpoint is not None:
        ckpt = folder / "checkpoints" / f"checkpoint-{checkpoint}"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text("{}")
    if run_json:
        config = config_for(preset, model=model)
        report = SimpleNamespace(path="dataset.jsonl", sha256="0" * 64, format="alpaca", examples=[None] * 40,
                                 problems=[])
        state = SimpleNamespace(global_step=len(losses), max_steps=total)
        callback = SimpleNamespace(last_loss=losses[-1], last_eval=evals[max(evals)] if evals else None)
        record = run_record(config, report, config.model, state, callback, stopped, runtime)
        record["finished_at"] = finished_at  # fixed, for the snapshots
        (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder


def index_line(path: Path, started_at: str, preset: str = "", model: str = "") -> str:
    return json.dumps({"path": str(path), "preset": preset, "model": model, "dataset": "dataset.jsonl",
                       "started_at": started_at}) + "\n"


@pytest.fixture
def utc():
    """Times are shown in local time: fix it to UTC so numbers and snapshots are the same everywhere."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def runs(tmp_path, monkeypatch, utc) -> Path:
    """A working folder `runs/` with a finished, a stopped, an unfinished and a broken run, and junk around them."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GENAPTITUDE_TRAINER_HOME", str(home))
    base = tmp_path / "runs"
    write_run(base / "finished", [2.5, 2.0, 1.6, 1.25], evals={2: 1.9, 4: 1.4}, runtime=120.0, rate=1233.0)
    write_run(base / "stopped", [3.0, 2.75, 2.5], total=10, evals={}, gpu=True, preset="8gb",
              model="Qwen/Qwen2.5-1.5B-Instruct", stopped=True, finished_at="2025-03-03T14:00:00+0000",
              runtime=60.0, rate=4000.0, checkpoint=3)
    write_run(base / "adapter.partial", [2.2, 2.1, 1.9, 1.8, 1.7], total=20, evals={4: 2.0}, gpu=True,
              run_json=False, runtime=50.0, rate=900.0, checkpoint=4)
    broken = write_run(base / "broken", [4.0, 3.5], runtime=10.0, run_json=False)
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    stamp = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    os.utime(broken / "metrics.jsonl", (stamp, stamp))
    (base / "plain-adapter").mkdir()  # an adapter from elsewhere: no run.json, not listed
    (base / "plain-adapter" / "adapter_config.json").write_text("{}")
    write_run(base / "finished.old-1700000000", [9.0])  # finalize()'s short-lived backup, not a run
    (home / "runs.jsonl").write_text(
        index_line(tmp_path / "gone" / "adapter", "2025-03-05T10:00:00+0000")  # vanished since
        + "{this line was cut by kill -9\n"
        + index_line(base / "finished", "2025-03-02T09:27:00+0000", "cpu")
        + index_line(base / "adapter", "2025-03-04T08:15:00+0000", "t4-fp16", "Qwen/Qwen2.5-0.5B-Instruct"),
        encoding="utf-8")
    return base


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


# -- the history screen -------------------------------------------------------------------------------------
@pytest.fixture
def anyio_backend():
    return "asyncio"


def make_app(output: str, engine: FakeEngine | None = None):
    from tui.app import TrainerApp

    app = TrainerApp(engine or FakeEngine(NO_GPU), output=output, refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    return app


async def open_history(pilot):
    from tui.screens.history import HistoryScreen

    await settle(pilot)
    await pilot.press("h")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen)
                     and pilot.app.screen.history is not None)
    return pilot.app.screen


def table_rows(screen) -> list[list[str]]:
    from textual.widgets import DataTable

    table = screen.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


FULL_ROWS = [
    ["… unfinished", "2025-03-04 08:15", "t4-fp16", "Qwen2.5-0.5B-Instruct", "5/20", "1.7000", "2.0000", "905",
     "runs/adapter.partial"],
    ["■ stopped", "2025-03-03 13:59", "8gb", "Qwen2.5-1.5B-Instruct", "3/10", "2.5000", "–", "4,003",
     "runs/stopped"],
    ["✔ finished", "2025-03-02 09:28", "cpu", "smollm2-135m-instruct", "4/4", "1.2500", "1.4000", "1,237",
     "runs/finished"],
    ["✘ unreadable", "2025-03-01 11:59", "–", "–", "2/2", "3.5000", "–", "1,202", "runs/broken"]]
ALL_COLUMNS = ["state", "started", "preset", "model", "steps", "loss", "eval", "tok/s", "path"]


@pytest.mark.anyio
@pytest.mark.parametrize("size, columns", [
    pytest.param((120, 40), ALL_COLUMNS, id="120x40"),
    pytest.param((80, 24), ["state", "started", "preset", "steps", "loss", "path"], id="80x24"),  # rest: summary
])
async def test_h_lists_the_past_runs_with_their_numbers(runs, size, columns):
    app = make_app("runs/adapter")
    async with app.run_test(size=size) as pilot:
        screen = await open_history(pilot)
        assert screen.columns == columns
        expected = [[row[ALL_COLUMNS.index(c)] for c in columns] for row in FULL_ROWS]
        if size == (80, 24):
            expected[0][-1] = "…s/adapter.partial"  # the path is cut from the left to fit
        assert table_rows(screen) == expected
        text = screen_text(app)
        assert "4 run(s), newest first, from runs/, ./ and the index home/runs.jsonl" in text
        assert "✔ finished    2025-03-02 09:28  cpu" in text  # on screen, not only in the table's data
        assert all(len(line) <= size[0] for line in text.splitlines())
        assert screen.query_one("DataTable").max_scroll_x == 0  # every shown column fits: no sideways scrolling
        if size == (120, 40):  # a terminal made narrower drops the columns that no longer fit
            await pilot.resize_terminal(80, 24)
            await wait_until(pilot, lambda: "model" not in screen.columns)
            assert screen.columns == ["state", "started", "preset", "steps", "loss", "path"]
            assert screen.query_one("DataTable").max_scroll_x == 0


@pytest.mark.anyio
async def test_enter_replots_the_chosen_runs_loss_and_memory(runs):
    from tui.screens.history import HistoryScreen, MemoryChart
    from tui.widgets.chart import LossChart

    engine = FakeEngine(NO_GPU)
    app = make_app("runs/adapter", engine)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(pilot)
        assert not screen.query_one("#history-charts").display  # nothing chosen yet
        await pilot.press("down", "down", "enter")  # the finished run
        chart, memory = screen.query_one(LossChart), screen.query_one(MemoryChart)
        metrics = [json.loads(line) for line in (runs / "finished" / "metrics.jsonl").read_text().splitlines()]
        assert chart.train == [(m["step"], m["loss"]) for m in metrics if m["event"] == "step"]
        assert chart.eval == [(m["step"], m["eval_loss"]) for m in metrics if m["event"] == "eval"]
        assert chart.total_steps == 4
        assert memory.main == [(m["step"], m["process_rss_gib"]) for m in metrics if m["event"] == "memory"]
        assert memory.nvml == []
        assert screen.query_one("#history-charts").display and chart.size.height >= 6
        text = screen_text(app)
        assert "✔ Finished: 4/4 steps in 2m00s · train loss 1.2500 · eval loss 1.4000" in text
        assert "1,237 tok/s · peak 2.04 GiB · preset cpu · smollm2-135m-instruct" in text
        assert "data dataset.jsonl · started 2025-03-02 09:28" in text
        assert "Path: runs/finished" in text
        assert "2.562 ┤" in text and "1.188 ┤" in text  # the y axis: losses 2.5 … 1.25, plus 5% either side
        assert "process RAM" in text
        assert not any(type(s).__name__ == "PreviewScreen" for s in app.screen_stack)  # enter was ours

        await pilot.press("up", "enter")  # the stopped GPU run: torch allocated and the NVML reading
        assert chart.train == [(1, 3.0), (2, 2.75), (3, 2.5)] and chart.eval == []
        assert memory.main == [(1, 1.1), (2, 1.2), (3, 1.3)] and memory.nvml == [(1, 3.1), (2, 3.2), (3, 3.3)]
        text = screen_text(app)
        assert "■ Stopped: 3/10 steps in 1m00s" in text and "peak 1.80 GiB" in text
        assert "Path: runs/stopped  resumable: checkpoints/checkpoint-3" in text

        await pilot.press("t")  # the main screen's keys are not live under this screen
        await pilot.pause()
        assert engine.train_calls == [] and isinstance(app.screen, HistoryScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HistoryScreen) and app.tabs.active == "overview"


@pytest.mark.anyio
async def test_no_runs_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENAPTITUDE_TRAINER_HOME", str(tmp_path / "home"))
    (tmp_path / "out").mkdir()
    app = make_app("out/adapter")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(pilot)
        assert screen.history.runs == []
        text = " ".join(screen_text(app).split())
        assert "No past runs found in out/, ./ and the index home/runs.jsonl." in text
        assert "A run appears here once it has started" in text


@pytest.mark.anyio
async def test_the_command_palette_opens_the_run_list(runs):
    from tui.screens.history import HistoryScreen

    app = make_app("runs/adapter")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"past")
        await wait_until(pilot, lambda: "Show past runs" in screen_text(app))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.history is not None)
        assert len(app.screen.history.runs) == 4


@pytest.mark.parametrize("size", SIZES)
def test_history_screen_snapshot(snap_compare, runs, size):
    async def show_finished_run(pilot) -> None:
        await open_history(pilot)
        await pilot.press("down", "down", "enter")
        await pilot.pause()

    assert snap_compare(make_app("runs/adapter"), terminal_size=size, run_before=show_finished_run)
