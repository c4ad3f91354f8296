"""Snapshots of the first screen (Overview), every tab and dialog at 80×24 and 120×40, with the scripted engine
(fixed numbers, no timers).

Update with `pytest tests/test_tui_snapshots.py --snapshot-update`, then review the SVGs before keeping them.
"""
from __future__ import annotations

import pytest

from tests.tui_fakes import BAD_LINES, NO_GPU, RTX_3060, RTX_SAMPLES, FakeEngine, settle, wait_until
from tui.app import TrainerApp

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def snapshot_app(engine: FakeEngine) -> TrainerApp:
    # A relative output that does not exist, so no dialog asks about it and the path is the same everywhere.
    app = TrainerApp(engine, output="no-such-dir/adapter", refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    return app


async def ready(pilot) -> None:
    await settle(pilot)


async def finished_run(pilot) -> None:
    await settle(pilot)
    await pilot.press("t")
    await wait_until(pilot, lambda: pilot.app.training.state == "finished")


@pytest.mark.parametrize("size", SIZES)
def test_first_screen_without_gpu(snap_compare, size):
    """The Overview tab, as the app opens: no-GPU state, the suggested cpu preset and a sample of the data."""
    assert snap_compare(snapshot_app(FakeEngine(NO_GPU)), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_first_screen_with_gpu(snap_compare, size):
    assert snap_compare(snapshot_app(FakeEngine(RTX_3060, RTX_SAMPLES)), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_first_screen_with_a_bad_dataset(snap_compare, size):
    assert snap_compare(snapshot_app(FakeEngine(NO_GPU, lines=BAD_LINES)), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_preset_tab_without_gpu(snap_compare, size):
    assert snap_compare(snapshot_app(FakeEngine(NO_GPU)), press=["2"], terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_dataset_tab(snap_compare, size):
    assert snap_compare(snapshot_app(FakeEngine(RTX_3060, RTX_SAMPLES)), press=["3"], terminal_size=size,
                        run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_dataset_tab_with_errors(snap_compare, size):
    assert snap_compare(snapshot_app(FakeEngine(NO_GPU, lines=BAD_LINES)), press=["3"], terminal_size=size,
                        run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_sample_preview(snap_compare, size):
    async def open_preview(pilot) -> None:
        await settle(pilot)
        await pilot.press("3", "enter")
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "rendered", None) is not None)

    assert snap_compare(snapshot_app(FakeEngine(NO_GPU)), terminal_size=size, run_before=open_preview)


@pytest.mark.parametrize("size", SIZES)
def test_training_tab_after_a_run(snap_compare, size):
    assert snap_compare(snapshot_app(FakeEngine(NO_GPU)), terminal_size=size, run_before=finished_run)
