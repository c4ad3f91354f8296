"""The history screen (`h`): past runs listed with their numbers, one re-plotted, no runs said in words, the
palette entry, and its snapshot. Run folders from tests/runfolders.py through the `runs` fixture."""
from __future__ import annotations

import json

import pytest

from tests.tui_fakes import NO_GPU, FakeEngine, screen_text, settle, wait_until

pytestmark = pytest.mark.slow  # a whole app: seconds each (make test-fast skips them)

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


# -- the history screen -------------------------------------------------------------------------------------

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
