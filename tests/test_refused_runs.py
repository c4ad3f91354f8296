"""A run refused before it trains leaves nothing behind (core/runs/output.leave): issue 29 saw `train --model
org/missing` refused in seconds but leave `.NAME.lock`, `.NAME.owner.json` and `NAME.partial/events.jsonl` in the
user's folder. Real `train` processes against a fake Hub (tests/fakehub.py); the folder listed before and after."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tinymodels import ROOT

# `train` as a user runs it, with the disk made small when FAKE_FREE_BYTES is set (the download's room check).
TRAIN = """
import os, shutil, sys
if os.environ.get("FAKE_FREE_BYTES"):
    real = shutil.disk_usage
    shutil.disk_usage = lambda p: real(p)._replace(free=int(os.environ["FAKE_FREE_BYTES"]))
from core.cli import main
sys.exit(main())
"""


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
def test_a_run_refused_before_it_trains_leaves_the_folder_as_it_was(tiny_model_dir, small_dataset, tmp_path):
    from tests.fakehub import FakeHub, repo_from_folder
    from tests.test_download import hub_env

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    bad = user / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": "y"}\nnot json\n')
    before = _listing(user)
    with FakeHub({"tiny/llama": repo_from_folder(tiny_model_dir)}) as hub:
        def train(*args, **extra):
            return subprocess.run([sys.executable, "-c", TRAIN, "train", "--preset", "cpu", "--max-steps", "1",
                                   "--output", "runs/mine", *args], capture_output=True, text=True, cwd=user,
                                  env=hub_env(hub.url, tmp_path / "hf", **extra), timeout=300)

        refusals = {
            "model not found": train("--dataset", str(small_dataset), "--model", "genaptitude-test/no-such-model"),
            "no room": train("--dataset", str(small_dataset), "--model", "tiny/llama", FAKE_FREE_BYTES="1000000"),
            "bad data": train("--dataset", str(bad), "--model", "tiny/llama"),
            "bad settings": train("--dataset", str(small_dataset), "--model", "tiny/llama", "--lr", "5"),
        }
    for why, r in refusals.items():
        assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, (why, r.stderr)
    assert "genaptitude-test/no-such-model does not exist on the Hub" in refusals["model not found"].stderr
    assert "not enough disk space" in refusals["no room"].stderr
    assert _listing(user) == before  # no lock, owner record, .partial or runs/ folder left
    runs = subprocess.run([sys.executable, "-m", "core", "runs"], capture_output=True, text=True, cwd=user,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "GENAPTITUDE_TRAINER_HOME": str(tmp_path / "home")}, timeout=120)
    assert runs.stdout.startswith("no runs found"), runs.stdout
