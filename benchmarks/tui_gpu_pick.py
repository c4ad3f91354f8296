"""The TUI on a box with several GPUs, driven as a user would: tick one GPU in the preset tab's GPU list, train.

    python benchmarks/tui_gpu_pick.py --gpu 1 --preset modern-bf16 --model /tmp/qwen-random --steps 6 \
        --output /tmp/tui-gpu1 --screen $OUT/tui-preset-tab.txt > $OUT/tui-gpu-pick.json

The app runs headless (Textual's test driver) with its real engine (the run in a child process, as by default);
only max_steps is set for the run. Prints what the preset tab said, the run's log lines about GPUs and the
gpu_ids its run.json recorded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def screen(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def until(predicate, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError
        await asyncio.sleep(0.1)


async def drive(a) -> dict:
    from textual.widgets import SelectionList

    from tui.app import TrainerApp
    from tui.bridge import ProcessEngine

    class Engine(ProcessEngine):
        def train(self, config, *args, **kw):
            return super().train(replace(config, max_steps=a.steps), *args, **kw)

    app = TrainerApp(Engine(), dataset=a.dataset, output=a.output, preset=a.preset, model=a.model,
                     refresh_interval=1.0, stats_delay=0.5, show_startup_time=False)
    out: dict = {}
    async with app.run_test(size=(130, 50)) as pilot:
        await until(lambda: app.hardware is not None and app.dataset.report is not None, 120)
        await pilot.press("2")
        gpu_list = app.query_one("#gpu-list", SelectionList)
        rows = [gpu_list.get_option_at_index(i).value for i in range(gpu_list.option_count)]
        out["gpu_list"] = rows
        gpu_list.focus()
        await pilot.press("home", *["down"] * rows.index(a.gpu), "space")
        await until(lambda: app.presets.config is not None and app.presets.config.gpu_ids == (a.gpu,), 10)
        await pilot.pause()
        text = screen(app)
        Path(a.screen).write_text(text + "\n") if a.screen else None
        out["preset_tab_gpu_lines"] = [line.strip() for line in text.splitlines()
                                       if "GPU" in line and ("free" in line or "a run uses" in line or "⚠" in line)]
        out["config_gpu_ids"] = list(app.presets.config.gpu_ids)
        app.query_one("#preset-list").focus()
        await pilot.press("4", "t")
        await pilot.pause(1.0)
        if "Start anyway?" in screen(app):  # a fit warning asks first; the user says yes
            out["asked"] = [line.strip() for line in screen(app).splitlines() if "⚠" in line]
            await pilot.press("y")
        await until(lambda: app.training_result is not None or app.training.state in ("failed", "finished"),
                    a.timeout)
        await pilot.pause()
        out["state"] = app.training.state
        lines = [strip.text.rstrip() for strip in app.query_one("#run-log").lines]
        out["log"] = [line for line in lines if line.strip()][:12]
    run = Path(a.output) / "run.json"
    if run.exists():
        out["run_json_gpu_ids"] = json.loads(run.read_text())["config"].get("gpu_ids")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gpu", type=int, default=1, help="the NVML index to tick in the list")
    p.add_argument("--preset", default="modern-bf16")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", default=str(ROOT / "dataset.jsonl"))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--output", required=True)
    p.add_argument("--screen", default=None, help="write the preset tab's text here")
    p.add_argument("--timeout", type=float, default=300)
    a = p.parse_args()
    print(json.dumps(asyncio.run(drive(a)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
