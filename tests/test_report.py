"""`report`: a PNG of a real run's curves that shows the loss line, for finished, stopped and .partial runs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core import events as ev
from core.cli import main
from core.runs.report import TRAIN_COLOUR, read_curves
from tests.test_engine import run


def metrics(folder):
    rows = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()]
    return ([(r["step"], r["loss"]) for r in rows if r["event"] == "step"],
            [(r["step"], r["eval_loss"]) for r in rows if r["event"] == "eval"],
            [(r["step"], r["process_rss_gib"]) for r in rows if r["event"] == "memory"])


@pytest.fixture(scope="module")
def finished(tiny_model_dir, small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "adapter"
    run(tiny_model_dir, small_dataset, out, max_steps=6, eval_every=2)
    return out


def colour_pixels(png, colour: str):
    """Where the image has exactly this colour (the line's core; antialiased edges are blends)."""
    import matplotlib.image

    rgb = (matplotlib.image.imread(str(png))[..., :3] * 255).round().astype(int)
    want = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return np.argwhere(np.abs(rgb - want).max(axis=-1) <= 8)


@pytest.mark.slow
def test_report_draws_the_runs_losses_and_memory(finished, capsys):
    assert main(["report", str(finished)]) == 0
    png = finished / "report.png"
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and "train loss" in out and "eval loss" in out

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < len(data) < 2_000_000
    import matplotlib.image

    height, width = matplotlib.image.imread(str(png)).shape[:2]
    assert (width, height) == (1000, 700)
    assert not list(finished.glob(".*.tmp"))

    # What is plotted is exactly what the run logged.
    steps, evals, memory = metrics(finished)
    curves = read_curves(finished)
    assert list(zip(curves.steps, curves.loss)) == steps and [s for s, _ in steps] == [1, 2, 3, 4, 5, 6]
    assert list(zip(curves.eval_steps, curves.eval_loss)) == evals and len(evals) >= 3
    assert list(zip(*curves.memory["process RAM (RSS)"])) == memory
    assert curves.title.startswith("preset cpu · model ") and "dataset.jsonl (40 rows)" in curves.title

    # The loss line is drawn: its colour runs across most of the upper (loss) panel, not just the legend swatch.
    pixels = colour_pixels(png, TRAIN_COLOUR)
    upper = pixels[pixels[:, 0] < height * 0.6]
    columns = np.unique(upper[:, 1])
    assert len(columns) > width * 0.6, f"train-loss colour in only {len(columns)} of {width} columns"


@pytest.mark.slow
def test_report_of_a_stopped_run_and_of_a_partial_folder(tiny_model_dir, small_dataset, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    run(tiny_model_dir, small_dataset, stopped, stop_at=2)
    out_png = tmp_path / "plots" / "stopped.png"
    assert main(["report", str(stopped), "--out", str(out_png)]) == 0
    assert out_png.is_file() and not (stopped / "report.png").exists()
    curves = read_curves(stopped)
    assert curves.steps == [1, 2] and curves.total_steps == 4 and "stopped early at step 2/4" in curves.subtitle

    # A crashed run leaves `<output>.partial` with metrics.jsonl and no run.json; its bare name finds it too.
    def crash(e):
        if isinstance(e, ev.MemorySample) and e.step == 3:  # after the step-3 line is written
            raise RuntimeError("power cut")

    from core.errors import TrainerError
    from core.presets import config_for
    from core.train.engine import train

    with pytest.raises(TrainerError):
        train(config_for("cpu", model=str(tiny_model_dir), max_steps=6), str(small_dataset), str(tmp_path / "crashed"),
              on_event=crash)
    partial = tmp_path / "crashed.partial"
    assert (partial / "metrics.jsonl").is_file() and not (partial / "run.json").exists()
    with (partial / "metrics.jsonl").open("a") as fh:
        fh.write('{"event": "step", "step": 4, "tot')  # cut mid-line by kill -9
    capsys.readouterr()
    assert main(["report", str(tmp_path / "crashed")]) == 0
    assert (partial / "report.png").is_file() and "wrote" in capsys.readouterr().out
    curves = read_curves(partial)
    assert curves.steps == [1, 2, 3] and "unfinished: step 3/6" in curves.subtitle


@pytest.mark.slow
def test_report_refuses_folders_that_are_not_runs(finished, tmp_path, capsys):
    not_run = tmp_path / "photos"
    not_run.mkdir()
    assert main(["report", str(not_run)]) == 2
    err = capsys.readouterr().err
    assert f"{not_run} is not a training run (no run.json, metrics or events in it)" in err
    assert "hint: give a run's --output folder" in err and "Traceback" not in err

    no_metrics = tmp_path / "no-metrics"
    no_metrics.mkdir()
    shutil.copy(finished / "run.json", no_metrics / "run.json")
    assert main(["report", str(no_metrics)]) == 2
    err = capsys.readouterr().err
    assert f"{no_metrics} has no training metrics yet" in err and "hint:" in err

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["report", str(finished), "--out", str(tmp_path / "r.svg")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.png"))
