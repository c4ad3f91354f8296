"""The TUI's small pure pieces: the braille chart, message coalescing, field parsing, summaries."""
from __future__ import annotations

import pytest

from core.events import Finished, MemorySample, StepLogged
from core.presets import config_for
from core.suggest import suggest
from tests.tui_fakes import NO_GPU, RTX_3060
from tui.messages import EngineEvent, GpuSampled
from tui.run_control import existing_output
from tui.widgets.chart import AXIS_WIDTH, render_chart
from tui.widgets.overview import reason_text, sample_line
from tui.widgets.presets import fit_warnings, parse
from tui.widgets.training import duration, failure_text, summary_text


def test_chart_draws_a_falling_line_with_its_axis():
    points = [(s, 3.0 - s * 0.5) for s in range(1, 5)]
    lines = render_chart([(points, "cyan")], width=30, height=6, x_max=8)
    assert len(lines) == 6
    assert all(len(line.plain) == 30 for line in lines)
    plot = [line.plain[AXIS_WIDTH:] for line in lines[:-1]]
    dots = [(col, row) for row, text in enumerate(plot) for col, ch in enumerate(text) if ch != " "]
    leftmost, rightmost = min(dots), max(dots)
    assert leftmost[1] == 0 and rightmost[1] == len(plot) - 1  # starts high on the left, ends low on the right
    assert all(ch == " " or 0x2800 <= ord(ch) <= 0x28FF for row in plot for ch in row)
    assert lines[0].plain.startswith(" 2.575 ┤") and lines[-2].plain.startswith(" 0.925 ┤")  # range ± 5%
    assert lines[-1].plain.rstrip().endswith("step 8")  # x axis runs to the planned total
    # steps 1..4 of 8 fill only the left half of the plot
    assert all(row[len(row) // 2 + 1:].strip() == "" for row in plot)


@pytest.mark.parametrize("scale", [1e-4, 1e-7, 1.0, 3e5])
def test_chart_labels_fit_their_gutter_at_any_scale(scale):
    """A run on a small export ends near 1e-4: the label 0.0005185 was wider than the gutter and pushed that row of
    the plot one column right. Every row keeps the axis in the same column and the plot its width."""
    train = [(s, scale * (5.2 - 0.04 * s)) for s in range(1, 101)]
    evals = [(s, scale * (5.19 - 0.04 * s)) for s in range(10, 101, 10)]
    lines = render_chart([(train, "cyan"), (evals, "yellow")], width=60, height=9, x_max=100)
    rows = [line.plain for line in lines[:-1]]
    assert all(len(line.plain) == 60 for line in lines)
    assert all(row[AXIS_WIDTH - 1] in "┤│" for row in rows)
    labels = [float(row[:AXIS_WIDTH - 2]) for row in rows if row[AXIS_WIDTH - 1] == "┤"]
    assert len(labels) == 3 and labels[0] > labels[1] > labels[2]  # top, middle, bottom, still readable
    span = scale * (5.16 - 1.2)  # the losses' range, padded 5% each side
    assert labels[0] == pytest.approx(scale * 5.16 + span / 20, rel=0.02)
    assert labels[2] == pytest.approx(scale * 1.2 - span / 20, rel=0.02)  # (near 1e-4: not squashed to 1e-3)


def test_chart_without_points_says_so():
    lines = render_chart([([], "cyan")], width=40, height=5)
    assert "no loss yet" in "".join(line.plain for line in lines)


def test_eval_points_are_drawn_in_their_own_style():
    lines = render_chart([([(1, 2.0), (10, 1.0)], "cyan"), ([(5, 1.5)], "yellow")], width=40, height=8)
    styles = {str(span.style) for line in lines for span in line.spans}
    assert {"cyan", "yellow"} <= styles


def test_memory_samples_coalesce_but_loss_points_never_do():
    mem = EngineEvent(MemorySample(1, 1.0, 1.0, 1.0, None, None, 2.0))
    mem2 = EngineEvent(MemorySample(2, 1.1, 1.0, 1.0, None, None, 2.0))
    step = EngineEvent(StepLogged(1, 10, 0.1, 2.0, 1e-3, None, 100.0, 1.0, 9.0))
    assert mem.can_replace(mem2)
    assert not step.can_replace(EngineEvent(StepLogged(2, 10, 0.2, 1.9, 1e-3, None, 100.0, 2.0, 8.0)))
    assert not mem.can_replace(step) and not step.can_replace(mem)
    assert GpuSampled([]).can_replace(GpuSampled([]))


def test_field_parsing():
    assert parse("batch_size", int, " 8 ") == (8, "")
    assert parse("batch_size", int, "8.5") == (None, "must be a whole number")
    assert parse("lr", float, "2e-4") == (2e-4, "")
    assert parse("lr", float, "fast")[1].startswith("must be a number")
    assert parse("max_steps", int, "") == (-1, "")  # empty: train by epochs
    assert parse("epochs", float, "") == (None, "required")


def test_fit_warnings():
    cfg = config_for("modern-bf16")
    assert fit_warnings(cfg, RTX_3060, 4.0) == []
    assert "has 6.5 GiB free" in fit_warnings(cfg, RTX_3060, 9.0)[0]
    assert "needs an NVIDIA GPU and none was found" in fit_warnings(cfg, NO_GPU, 4.0)[0]
    assert fit_warnings(config_for("cpu"), NO_GPU, 99.0) == []  # CPU runs are not checked against VRAM


def test_the_tui_and_the_run_judge_the_hardware_by_one_rule():
    """core.gpus.fit_problems: the preset tab's warnings (NVML's facts) are the run's refusals (torch's facts)."""
    from dataclasses import replace

    from core.gpus import fit_problems

    no_bf16 = replace(RTX_3060, gpus=[replace(RTX_3060.gpus[0], name="Tesla T4", bf16=False)])
    cfg = config_for("modern-bf16", gpus=2)
    said = fit_warnings(cfg, no_bf16, 9.0)
    rule = fit_problems(cfg, count=1, bf16=False, name="Tesla T4", need_gib=9.0, free_gib=6.5)
    assert said == [f"{p.message}: {p.fix}" for p in rule] and len(said) == 3
    assert said[0] == "2 GPUs asked for, this machine has 1: set GPUs to 1 (--gpus 1)"
    assert said[1].startswith("preset 'modern-bf16' uses bf16, which Tesla T4 does not support")
    assert fit_problems(config_for("t4-fp16"), count=1, bf16=False, name="Tesla T4") == []


def test_summaries_say_where_the_adapter_is():
    done = Finished("/runs/a", 40, 100, 1.5, None, True, 125.0, "/runs/a/checkpoints/checkpoint-40")
    text = summary_text(done).plain
    assert "Stopped at step 40 of 100 in 2m05s" in text and "eval loss –" in text
    assert "Adapter: /runs/a" in text and "Resumable checkpoint: /runs/a/checkpoints/checkpoint-40" in text
    assert "RAISE_LORA_PATH=/runs/a" in text
    failed = failure_text("out of memory", "lower --batch-size", ["dataset.jsonl:3: bad JSON\n    fix: quote it"])
    assert "✘ Training failed: out of memory" in failed.plain and "dataset.jsonl:3: bad JSON" in failed.plain
    assert "hint: lower --batch-size" in failed.plain
    assert duration(3725) == "1h02m" and duration(59.6) == "1m00s" and duration(None) == "–"


def _checkpoint(folder, step, complete=True):
    ckpt = folder / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    if complete:  # what the Trainer writes last: without it the checkpoint cannot be resumed
        (ckpt / "trainer_state.json").write_text("{}")


def test_existing_output_and_the_resume_offer_follow_cores_rule(tmp_path):
    """The TUI offers `r resume` exactly when `train --resume` finds a checkpoint (core.runs.output.resume_point):
    one rule, asked by both; a checkpoint folder the Trainer never finished writing is not offered."""
    from core.errors import InputError
    from core.runs.output import prepare, resume_point

    def layouts():
        yield "nothing", lambda out: None
        yield "empty folder", lambda out: out.mkdir()
        yield "adapter", lambda out: (out.mkdir(), (out / "adapter_config.json").write_text("{}"),
                                      (out / "adapter_model.safetensors").write_bytes(b"w"))
        yield "stopped run", lambda out: (out.mkdir(), (out / "adapter_config.json").write_text("{}"),
                                          (out / "adapter_model.safetensors").write_bytes(b"w"), _checkpoint(out, 4))
        yield "killed run", lambda out: _checkpoint(out.with_name(out.name + ".partial"), 3)
        yield "half-written checkpoint", lambda out: _checkpoint(out.with_name(out.name + ".partial"), 3, False)
        yield "partial without checkpoint", lambda out: out.with_name(out.name + ".partial").mkdir()

    for i, (name, make) in enumerate(layouts()):
        out = tmp_path / f"case{i}" / "adapter"
        out.parent.mkdir()
        make(out)
        found = existing_output(str(out))
        offered = bool(found and found[1])
        assert offered == (resume_point(out) is not None), name
        try:
            prepare(out, overwrite=False, resume=True).lock.release()
            resumed = True
        except InputError:
            resumed = False
        assert offered == resumed, name
        if name == "adapter":
            assert found == (f"{out} already holds an adapter", False)
        if name in ("killed run", "half-written checkpoint"):
            assert "unfinished run" in found[0]
        if name in ("nothing", "empty folder"):
            assert found is None


def test_sample_lines_fit_the_width_and_keep_both_sides():
    short = sample_line(2, "Résumer la fonction.", "La fonction contrôle l'attitude.", 76).plain
    assert short == "   2  Résumer la fonction. → La fonction contrôle l'attitude."
    long = sample_line(14, "Identifier l'allocation " * 5, "Elle est allouée au composant " * 5, 60).plain
    assert len(long) == 60 and long.startswith("  14  Identifier") and "→ Elle est allouée" in long
    assert long.count("…") == 2  # both sides cut, each keeps about half the room
    tight = sample_line(1, "x" * 100, "ok", 40).plain
    assert len(tight) == 40 and tight.endswith("… → ok")  # a short answer is kept whole
    assert sample_line(7, "plain text row", "", 40).plain == "   7  plain text row"


def test_suggestion_reason_does_not_repeat_the_nvml_error():
    reason = reason_text(suggest(NO_GPU), NO_GPU)
    assert reason == "no NVIDIA GPU; training runs on the CPU with the bundled small model"
    assert reason_text(suggest(RTX_3060), RTX_3060) == suggest(RTX_3060).reason


@pytest.mark.anyio
async def test_a_config_sent_before_the_overview_is_composed_is_painted_once_it_is():
    """On a loaded machine the preset panel's first ConfigChanged can reach the overview before its children exist
    (seen as NoMatches '#overview-preset' at start-up): the values wait and are painted on mount."""
    from textual.app import App
    from textual.widgets import Static

    from tests.tui_fakes import FakeEngine
    from tui.widgets.hardware import HardwarePanel
    from tui.widgets.overview import OverviewPanel

    panel = OverviewPanel(HardwarePanel(FakeEngine(NO_GPU), interval=None), "cpu")
    panel.show_config("cpu", config_for("cpu"), 2.2)  # before compose: no NoMatches

    class Host(App):
        def compose(self):
            yield panel

    async with Host().run_test() as pilot:
        await pilot.pause()
        text = str(panel.query_one("#overview-preset", Static).render())
        assert "Preset cpu" in text and "RAM ≈ 2.2 GiB" in text


def test_a_token_length_request_reaching_a_panel_without_children_is_dropped():
    """The stats timer can fire as the app closes (seen in CI: the test ended before its 0.5 s delay): the dataset
    panel, its children gone, neither fails nor starts measuring."""
    from types import SimpleNamespace

    from tests.tui_fakes import FakeEngine
    from tui.widgets.dataset import DatasetPanel

    panel = DatasetPanel(FakeEngine(NO_GPU), "dataset.jsonl")
    panel.report = SimpleNamespace(sha256="abc", examples=[])
    panel.measure("smollm2-135m-instruct", 512)
    assert panel.stats_key is None and panel.max_length == 512
