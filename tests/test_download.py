"""The first download of a Hub model, against a fake Hub on 127.0.0.1 (tests/fakehub.py) serving a tiny model built
here. Each download runs in its own process with HF_ENDPOINT/HF_HOME pointing at the fake Hub and a temp cache
(huggingface_hub reads them at import), exactly as `genaptitude-trainer train --model org/name` would. Nothing
touches the internet."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.download import human_bytes
from core.events import DownloadProgress, Phase, from_json
from core.runs.output import how_it_ended
from tests.fakehub import FakeHub, repo_from_folder
from tests.tinymodels import ROOT

pytestmark = pytest.mark.slow  # a whole app, a child process or a real model: seconds each (make test-fast skips)

REPO = "tiny/llama"

# The resolver as `train` calls it, its events printed as JSON lines. FAKE_FREE_BYTES shrinks the disk, FAKE_ENOSPC
# fills it while the weights are written (test-only hooks).
RESOLVE = """
import os, shutil, sys
if os.environ.get("FAKE_FREE_BYTES"):
    real = shutil.disk_usage
    shutil.disk_usage = lambda p: real(p)._replace(free=int(os.environ["FAKE_FREE_BYTES"]))
if os.environ.get("FAKE_ENOSPC"):  # the disk fills up while the weights are written
    import errno
    from huggingface_hub import file_download
    real_get = file_download.http_get
    def http_get(url, temp_file, **kw):
        if url.endswith(".safetensors") or "/cdn/" in url:
            temp_file.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_get(url, temp_file, **kw)
    file_download.http_get = http_get
from core.errors import TrainerError
from core.models import resolve

try:
    path = resolve(sys.argv[1], emit=lambda e: print(e.to_json(), flush=True))
except TrainerError as exc:
    print("error: " + exc.render(), file=sys.stderr)
    sys.exit(exc.exit_code)
print("PATH " + str(path))
"""


def hub_env(url: str, home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_ETAG_TIMEOUT")}
    return {**env, "HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": str(ROOT), **extra}


class Result:
    def __init__(self, proc: subprocess.CompletedProcess, seconds: float):
        self.rc, self.stderr, self.seconds = proc.returncode, proc.stderr, seconds
        lines = proc.stdout.splitlines()
        self.events = [from_json(line) for line in lines if line.startswith("{")]
        self.path = next((Path(line[5:]) for line in lines if line.startswith("PATH ")), None)

    @property
    def progress(self) -> list[DownloadProgress]:
        return [e for e in self.events if isinstance(e, DownloadProgress)]


def resolve_in_process(url: str, home: Path, repo: str = REPO, timeout: float = 120, **extra) -> Result:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RESOLVE, repo], capture_output=True, text=True, cwd=ROOT,
                          env=hub_env(url, home, **extra), timeout=timeout)
    return Result(proc, time.monotonic() - start)


@pytest.fixture(scope="module")
def tiny_repo(tiny_model_dir) -> dict[str, bytes]:
    files = repo_from_folder(tiny_model_dir)
    assert "model.safetensors" in files and "config.json" in files
    return files


def assert_same_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def test_first_download_reports_bytes_up_to_the_total_then_works_offline(tiny_repo, tmp_path):
    with FakeHub({REPO: tiny_repo}) as hub:
        r = resolve_in_process(hub.url, tmp_path)
        assert r.rc == 0, r.stderr
        phase = next(e for e in r.events if isinstance(e, Phase))
        total = sum(len(d) for d in tiny_repo.values())
        assert phase.name == "downloading model" and f"{REPO}: {len(tiny_repo)} file(s)" in phase.detail
        done = [e.done for e in r.progress]
        assert done == sorted(done) and done[-1] == total and all(e.total == total for e in r.progress)
        assert_same_files(r.path, tiny_repo)
        assert r.path.is_relative_to(tmp_path / "hub")

        n_requests = len(hub.requests)
        again = resolve_in_process(hub.url, tmp_path, HF_HUB_OFFLINE="1")  # the cache alone is enough now
        assert again.rc == 0, again.stderr
        assert again.path == r.path and again.events == [] and len(hub.requests) == n_requests


@pytest.fixture(scope="module")
def big_repo(tiny_repo) -> dict[str, bytes]:
    """Weights of 6 MiB (random bytes: resolving needs no real model), so a transfer spans several chunks."""
    return {"config.json": tiny_repo["config.json"], "model.safetensors": os.urandom(6 * 2**20)}


def test_a_slow_transfer_shows_its_rate_and_eta(big_repo, tmp_path):
    pace = 2 * 2**20  # bytes/s: the weights take ~3 s
    with FakeHub({REPO: big_repo}, bytes_per_s=pace) as hub:
        r = resolve_in_process(hub.url, tmp_path)
    assert r.rc == 0, r.stderr
    total = r.progress[-1].total
    middle = [e for e in r.progress if 0 < e.done < total and e.rate_bps]
    assert len(middle) >= 2, r.progress
    for e in middle:
        assert pace / 3 < e.rate_bps < pace * 3, e  # near the server's pace
        assert e.eta_s is not None and 0 < e.eta_s < 10
        assert e.file == "model.safetensors"


def test_a_cut_transfer_resumes_where_it_stopped(big_repo, tmp_path):
    cut = 5 * 2**20 + 1000
    with FakeHub({REPO: big_repo}, cut_after={"model.safetensors": cut}) as hub:
        r = resolve_in_process(hub.url, tmp_path)
        assert r.rc == 0, r.stderr
        first, retry = hub.gets("model.safetensors")
        # The retry asks only for what is missing: from the last whole chunk (1 MiB) the cut connection delivered.
        assert first is None and retry == f"bytes={5 * 2**20}-", retry
    assert_same_files(r.path, big_repo)


def test_a_stopped_download_keeps_its_finished_files_and_the_next_run_fetches_the_rest(tiny_repo, tmp_path):
    weights = len(tiny_repo["model.safetensors"])
    with FakeHub({REPO: tiny_repo}, bytes_per_s=weights / 20) as hub:
        proc = subprocess.Popen([sys.executable, "-c", RESOLVE, REPO], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=hub_env(hub.url, tmp_path))
        deadline = time.monotonic() + 60
        while not hub.gets("model.safetensors") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # some weight bytes are on the way
        proc.kill()  # as a lost SSH session or kill -9 would
        proc.communicate()
        small = [n for n in tiny_repo if n != "model.safetensors"]
        first = {n: len(hub.gets(n)) for n in small}
        assert all(v == 1 for v in first.values()), first

        hub.bytes_per_s = None
        r = resolve_in_process(hub.url, tmp_path)
        assert r.rc == 0, r.stderr
        assert {n: len(hub.gets(n)) for n in small} == first  # finished files were not fetched again
        assert r.progress[0].done == sum(len(tiny_repo[n]) for n in small)  # and the meter starts past them
    assert_same_files(r.path, tiny_repo)


def test_a_gated_model_says_how_to_log_in(tiny_repo, tmp_path):
    with FakeHub({REPO: tiny_repo}, gated=(REPO,)) as hub:
        r = resolve_in_process(hub.url, tmp_path)
    assert r.rc == 2 and r.seconds < 15
    assert f"error: model {REPO} is gated" in r.stderr
    assert "hf auth login" in r.stderr and "huggingface-cli login" in r.stderr and "HF_TOKEN" in r.stderr
    assert "Traceback" not in r.stderr


def test_no_network_is_refused_in_seconds(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = resolve_in_process(f"http://127.0.0.1:{port}", tmp_path)
    assert r.rc == 1 and r.seconds < 15, (r.seconds, r.stderr)
    assert f"error: cannot reach the Hugging Face Hub at http://127.0.0.1:{port} to download {REPO}" in r.stderr
    assert "smollm2-135m-instruct" in r.stderr and "Traceback" not in r.stderr


def test_a_hub_that_never_answers_is_given_up_after_the_timeout(tmp_path):
    with FakeHub({REPO: {}}, stall_api=True) as hub:
        r = resolve_in_process(hub.url, tmp_path, HF_HUB_ETAG_TIMEOUT="2")
    assert r.rc == 1 and r.seconds < 15, (r.seconds, r.stderr)
    assert f"error: the Hub at {hub.url} stopped answering (nothing for 2 s)" in r.stderr


def test_a_transfer_that_goes_silent_is_retried_then_given_up(big_repo, tmp_path):
    """huggingface_hub retries a silent transfer 5 times (each resuming by Range) before giving up: with a 1 s read
    timeout that is seconds, with the default 10 s about a minute; never forever."""
    with FakeHub({REPO: big_repo}, stall_after={"model.safetensors": 3 * 2**20}) as hub:
        r = resolve_in_process(hub.url, tmp_path, HF_HUB_DOWNLOAD_TIMEOUT="1", HF_HUB_ETAG_TIMEOUT="1")
        assert r.rc == 1 and r.seconds < 30, (r.seconds, r.stderr)
        assert f"error: the Hub at {hub.url} stopped answering" in r.stderr and "Traceback" not in r.stderr
        assert len(hub.gets("model.safetensors")) == 6


def test_a_disk_without_room_is_refused_before_any_byte_moves(tiny_repo, tmp_path):
    with FakeHub({REPO: tiny_repo}) as hub:
        r = resolve_in_process(hub.url, tmp_path, FAKE_FREE_BYTES="1000000")
        assert r.rc == 2, r.stderr
        assert f"error: not enough disk space to download {REPO}" in r.stderr and "HF_HOME" in r.stderr
        assert not any(m == "GET" and "/resolve/" in p or p.startswith("/cdn/") for m, p, _ in hub.requests)


def test_a_disk_that_fills_up_midway_says_so_and_keeps_the_finished_files(tiny_repo, tmp_path):
    with FakeHub({REPO: tiny_repo}) as hub:
        r = resolve_in_process(hub.url, tmp_path, FAKE_ENOSPC="1")
    assert r.rc == 1, r.stderr
    assert f"error: the disk filled up while downloading {REPO}" in r.stderr and "HF_HOME" in r.stderr
    snapshot = next((tmp_path / "hub" / "models--tiny--llama" / "snapshots").iterdir())
    assert (snapshot / "config.json").read_bytes() == tiny_repo["config.json"]
    assert not (snapshot / "model.safetensors").exists()


@pytest.mark.slow
def test_cli_train_downloads_a_hub_model_and_names_a_missing_one(tiny_repo, small_dataset, tmp_path):
    """What a user sees: `train --model org/name` on a fresh machine, then a typo in the id."""
    with FakeHub({REPO: tiny_repo}) as hub:
        def train(repo, out):
            return subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(small_dataset),
                                   "--model", repo, "--preset", "cpu", "--max-steps", "1", "--eval-fraction", "0",
                                   "--output", str(tmp_path / out)],
                                  capture_output=True, text=True, cwd=ROOT, env=hub_env(hub.url, tmp_path / "hf"),
                                  timeout=300)

        ok = train(REPO, "ok")
        assert ok.returncode == 0, ok.stderr
        assert f"[downloading model] {REPO}: {len(tiny_repo)} file(s)" in ok.stdout
        size = human_bytes(sum(len(d) for d in tiny_repo.values()))
        assert f"\n[downloading model] {size} / {size}  100%\n[loading model] " in ok.stdout, ok.stdout
        assert (tmp_path / "ok" / "adapter_model.safetensors").is_file()

        missing = train("tiny/no-such-model", "missing")
        assert missing.returncode == 2
        assert "error: model tiny/no-such-model does not exist on the Hub" in missing.stderr
        assert "Traceback" not in missing.stderr


def test_an_xet_download_counts_each_byte_once():
    """The real Hub serves Qwen's weights from Xet storage (the fake Hub cannot): huggingface_hub's Xet reporter
    must feed the meter the bytes written, not also the network bytes."""
    from types import SimpleNamespace

    xet = pytest.importorskip("huggingface_hub.utils._xet_progress_reporting")
    from core.download import Meter

    meter = Meter(None, REPO, total=100, done=0)
    with xet.XetDownloadProgressReporter(reconstruction_desc="model.safetensors", total=100, log_level=30,
                                         tqdm_class=meter.bar_class()) as reporter:
        for written, received in ((30, 20), (100, 80)):
            reporter.update_progress(SimpleNamespace(
                total_bytes_completed=written, total_transfer_bytes_completed=received, total_bytes=100,
                total_bytes_completion_rate=None, total_transfer_bytes_completion_rate=None))
    assert meter.done == 100


def test_ctrl_c_during_the_download_stops_it_at_once_and_the_next_run_fetches_the_rest(big_repo, small_dataset,
                                                                                     tmp_path):
    """`train --model org/name` on a slow link: Ctrl-C while the weights arrive ends the run within seconds (not
    after the whole file), says what the cache holds, and the next run fetches only what is missing."""
    pace = 2**20  # bytes/s: the 6 MiB of weights would take 6 s
    with FakeHub({REPO: big_repo}, bytes_per_s=pace) as hub:
        cmd = [sys.executable, "-m", "core", "train", "--dataset", str(small_dataset), "--model", REPO, "--preset",
               "cpu", "--max-steps", "1", "--eval-fraction", "0", "--output", str(tmp_path / "out")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env=hub_env(hub.url, tmp_path / "hf"))
        deadline = time.monotonic() + 60
        while not hub.gets("model.safetensors") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # about 1.5 MiB of the weights are in
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - asked
        assert proc.returncode == 130, (out, err)
        assert stopped_after < 3, stopped_after  # the next 1 MiB chunk, not the 4.5 MiB left
        config = human_bytes(len(big_repo["config.json"]))
        total = human_bytes(sum(len(d) for d in big_repo.values()))
        assert (f"stopped while downloading {REPO}: 1 file(s), {config} of {total}, are in the Hugging Face cache"
                in err), err
        assert "run the same command again" in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()  # no adapter folder for a run that never trained
        # its work folder stays (its events); the next run into it says how this one ended, not that it vanished
        assert how_it_ended(tmp_path / "out").startswith(f"was stopped while downloading {REPO}: 1 file(s)")

        hub.bytes_per_s = None
        r = resolve_in_process(hub.url, tmp_path / "hf")
        assert r.rc == 0, r.stderr
        assert len(hub.gets("config.json")) == 1  # the finished file was not fetched again
    assert_same_files(r.path, big_repo)
