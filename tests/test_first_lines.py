"""What each command prints first is ours: no library notice comes before (or between) our lines. The real commands in
fresh processes, as a user runs them, on whatever releases are installed: `make test` runs this on the lock,
`make test-newest` on today's releases (which is how a new library notice is seen before a user sees it). Where such a
notice is dropped: core/libraries.py (NOTICES, SWITCHES, held_stderr)."""
from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_runs_real import read_in_background
from tests.tinymodels import BUNDLED_DATASET, ROOT

pytestmark = pytest.mark.slow  # child processes that import torch: seconds each

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
# Lines of ours on stderr: the run's phases and its warnings (core/cli/printers.py).
OURS_ON_STDERR = re.compile(r"^(\[[a-z -]+\] |warning: |info: |error: |  )")


def command(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=600)


def test_doctor_presets_and_check_say_their_own_first_line_and_nothing_else_on_stderr(tmp_path):
    doctor = command(["doctor"], tmp_path)
    assert doctor.returncode == 0, doctor.stderr
    assert re.match(r"(no GPU: |GPU \d+: )", doctor.stdout.splitlines()[0]), doctor.stdout[:300]
    presets = command(["presets"], tmp_path)
    assert presets.stdout.splitlines()[0].startswith("modern-bf16: "), presets.stdout[:300]
    # the bundled model: converted from its GGUF on the first `check` of a fresh machine (transformers' GGUF reader
    # drew its own progress bar there, before our first line), read from the cache afterwards
    check = command(["check", str(BUNDLED_DATASET)], tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[0] == (f"{BUNDLED_DATASET}: 240 valid rows, format: GenAptitude / Alpaca "
                                            "(instruction, input, output)")
    for r in (doctor, presets, check):
        assert r.stderr == "", r.stderr[:500]


def test_train_starts_with_our_phases_and_every_stderr_line_is_ours(tiny_model_dir, small_dataset, tmp_path):
    r = command(["train", "--dataset", str(small_dataset), "--preset", "cpu", "--model", str(tiny_model_dir),
                 "--max-steps", "1", "--output", str(tmp_path / "out")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[0] == f"[resolving model] {tiny_model_dir}", r.stdout[:300]
    strangers = [line for line in r.stderr.splitlines() if line.strip() and not OURS_ON_STDERR.match(line)]
    assert not strangers, strangers[:5]


def test_the_tuis_first_bytes_are_the_app_and_no_library_line_comes_before_it(tmp_path):
    """Under a pseudo-terminal: anything written before the app switches to its screen (a warning at import) would
    sit in the user's scrollback and be the first thing they read."""
    master, slave = pty.openpty()
    app = subprocess.Popen([sys.executable, "-m", "tui", "--dataset", str(BUNDLED_DATASET)], stdin=slave,
                           stdout=slave, stderr=slave, env={**ENV, "TERM": "xterm-256color"}, cwd=tmp_path,
                           start_new_session=True)
    os.close(slave)
    screen = read_in_background(master)
    try:
        end = time.time() + 60
        while time.time() < end and not (b"Train" in screen and b"rows" in screen):
            time.sleep(0.1)
        assert b"Train" in screen, bytes(screen[-500:])
    finally:
        app.kill()
        app.wait(timeout=10)
        os.close(master)
    before = bytes(screen).split(b"\x1b[?1049h", 1)[0]  # the alternate screen: the app's own from here on
    text = re.sub(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])", b"", before)  # escape sequences
    assert text.strip() == b"", text[:500]
