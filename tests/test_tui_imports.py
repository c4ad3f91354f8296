"""Import hygiene: the TUI paints without torch/transformers, and `core` never needs Textual."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")


def loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_app_loads_no_torch_or_transformers():
    loaded = loaded_after("import tui.app")
    assert "textual" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_painting_the_first_screen_loads_no_torch_or_transformers():
    """The real engine's start-up jobs (hardware probe, dataset read) run; nothing heavy may come with them."""
    code = f"""
import asyncio, sys
from tui.app import TrainerApp
async def main():
    app = TrainerApp(dataset={str(ROOT / 'dataset.jsonl')!r}, refresh_interval=None, stats_delay=60)
    async with app.run_test(size=(80, 24)) as pilot:
        sample = app.overview.query_one("DataSample")
        while app.hardware is None or not (sample.rows or app.dataset.error):
            await pilot.pause(0.05)
        assert app.startup_seconds is not None
        assert app.tabs.active == "overview" and sample.rows  # the first screen shows a sample of the data
asyncio.run(main())
"""
    loaded = loaded_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_core_modules_never_import_textual():
    modules = ["core.presets", "core.events", "core.errors", "core.data.dataset", "core.hardware"]
    loaded = loaded_after("\n".join(f"import {m}" for m in modules))
    assert "textual" not in loaded and "rich" not in loaded
    assert not loaded & {"torch", "transformers"}
