"""Did it learn: the bundled SmolLM2-135M, a short CPU run on a fresh GenAptitude-like export, held-out rows.

The full demonstration (one epoch on the bundled 240 rows, held-out exact match ≥ 0.95) is the README's command;
this shorter version fits the CI budget: 64 rows of an export the model never saw (another seed), 1 epoch, 29
steps (96 rows and 43 steps before: a third less training, 6 held-out rows answered instead of 10). It still
fails when learning breaks: with the loss mask inverted (the prompt trained, not the answer) the same run ended at eval
loss 1.87, its check said "not learned" and evaluate gave exact match 0.00, eval loss 1.92 against the base's 2.06;
unbroken, 0.16, exact match 0.50, similarity 0.82 against 0.20, eval loss 0.19 (2026-12-05, 2 loaded cores).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.genexport import generate, write_jsonl


def cli(*args, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_short_cpu_run_on_an_unseen_export_learns_the_answers(tmp_path):
    data = tmp_path / "export.jsonl"
    write_jsonl(generate(seed=11, rows=64), str(data))
    out = tmp_path / "adapter"
    # --score-seconds 600: the after-run check's 60 s bound is for users; on a loaded 2-core CI machine it cut every
    # answer (a fresh-clone run said "not learned", similarity 0.32, in 63 s), and only whole answers are scored now
    cli("train", "--dataset", str(data), "--preset", "cpu", "--epochs", "1", "--eval-fraction", "0.1",
        "--score-seconds", "600", "--output", str(out), "--json")
    record = json.loads((out / "run.json").read_text())
    assert record["steps"] == 29 and record["final"]["eval_loss"] < 0.3
    assert record["held_out"]["verdict"] in ("learned", "partly")  # the run's own check agrees

    result = json.loads(cli("evaluate", "--adapter", str(out), "--dataset", str(data), "--compare", "--json"))
    base, tuned = result["results"]
    assert result["rows"] == 6  # the run's own held-out split
    assert base["label"] == "base" and base["exact_match"] == 0.0
    assert tuned["label"] == "adapter" and tuned["exact_match"] >= 0.3, [r for r in tuned["rows"] if not r["exact"]]
    assert tuned["similarity"] > base["similarity"] + 0.3
    assert tuned["eval_loss"] < base["eval_loss"] / 4
