"""Snapshots of the screens after a run (evaluate: base vs adapter; chat) at 80×24 and 120×40, scripted engine.

Update with `pytest tests/test_tui_after_run_snapshots.py --snapshot-update`, then review the SVGs before keeping them.
"""
from __future__ import annotations

import pytest

from tests.test_tui_snapshots import SIZES, finished_run, snapshot_app
from tests.tui_fakes import NO_GPU, FakeEngine, wait_until
from tui.screens.chat import ChatScreen
from tui.screens.evaluate import EvaluateScreen

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)



@pytest.mark.parametrize("size", SIZES)
def test_evaluate_screen(snap_compare, size):
    """Scores per model in two columns, then each held-out row: prompt, reference, base and adapter answers."""
    async def evaluate(pilot) -> None:
        await finished_run(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, EvaluateScreen)
                         and pilot.app.screen.results is not None)

    assert snap_compare(snapshot_app(FakeEngine(NO_GPU)), terminal_size=size, run_before=evaluate)


@pytest.mark.parametrize("size", SIZES)
def test_chat_screen_after_two_prompts(snap_compare, size):
    async def chat(pilot) -> None:
        await finished_run(pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.state == "ready")
        for n, prompt in enumerate(["Which layer holds it?", "Quelle fonction ?"], 1):
            await pilot.press(*prompt, "enter")
            await wait_until(pilot, lambda: len(pilot.app.screen.exchanges) == n and pilot.app.screen.state == "ready")

    assert snap_compare(snapshot_app(FakeEngine(NO_GPU)), terminal_size=size, run_before=chat)
