"""The README's Colab cells, run as written, in order, each as its own process (as `!genaptitude-trainer ...` is).

Offline on CPU, each documented command gets only what CI needs appended (a tiny local model, the cpu preset, a
few steps, short answers); argparse lets a later flag replace an earlier one, so the documented flags still apply.
"""
from __future__ import annotations

import re
import shlex
import shutil
import zipfile

import pytest

from tests.conftest import ROOT
from tests.test_cli import cli

FLOW = ["doctor", "check", "train", "evaluate", "report", "export"]


def colab_cells() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Colab \(headless\)\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Colab (headless)' section"
    return match.group(1)


def documented_commands() -> list[list[str]]:
    return [shlex.split(line[1:])[1:] for line in colab_cells().splitlines()
            if line.startswith("!genaptitude-trainer ")]


def test_readme_installs_the_repo_and_the_script_is_the_cli():
    cells = colab_cells()
    assert "\n!pip install -q . " in cells  # the repository itself, with pip
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '\ngenaptitude-trainer = "core.cli:main"\n' in pyproject  # what `python -m core` runs (core/__main__.py)
    commands = documented_commands()
    assert [c[0] for c in commands] == FLOW
    assert "--compare" in commands[FLOW.index("evaluate")] and "--zip" in commands[FLOW.index("export")]


@pytest.mark.slow
def test_colab_sequence_runs_end_to_end(tiny_model_dir, small_dataset, tmp_path):
    shutil.copy(small_dataset, tmp_path / "dataset.jsonl")  # the notebook's folder holds the uploaded export
    added = {
        "check": ["--model", str(tiny_model_dir)],
        "train": ["--preset", "cpu", "--model", str(tiny_model_dir), "--max-steps", "4", "--eval-every", "2"],
        "evaluate": ["--limit", "2", "--max-new-tokens", "8"],
    }
    out = {}
    for command in documented_commands():
        r = cli(*command, *added.get(command[0], []), cwd=tmp_path, timeout=120)
        assert r.returncode == 0, (command, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, (command, r.stderr)
        out[command[0]] = r.stdout

    assert "suggested preset: cpu" in out["doctor"] and "bitsandbytes:" in out["doctor"]
    assert "dataset.jsonl: 40 valid rows, format:" in out["check"] and out["check"].rstrip().endswith("OK")
    adapter = (tmp_path / "genaptitude-qwen-adapter").resolve()
    assert "run: preset cpu" in out["train"] and "step 4/4  loss" in out["train"]
    assert "finished after 4/4 steps" in out["train"] and f"adapter: {adapter}" in out["train"]
    assert f"for RAISE: genaptitude-trainer export --adapter {adapter} --gguf q8_0" in out["train"]
    for label in ("base", "adapter"):
        assert re.search(rf"^{label}: exact match \d\.\d\d, similarity \d\.\d\d, eval loss \d+\.\d+ \(2 rows\)$",
                         out["evaluate"], re.M), out["evaluate"]
    assert f"wrote {adapter / 'report.png'}" in out["report"]
    assert f"wrote {tmp_path / 'adapter.zip'}" in out["export"]

    names = set(zipfile.ZipFile(tmp_path / "adapter.zip").namelist())
    top = "genaptitude-qwen-adapter/"
    assert {top + n for n in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                              "tokenizer_config.json", "run.json", "metrics.jsonl", "report.png")} <= names
    assert not any("checkpoint" in n for n in names) and all(n.startswith(top) for n in names)
