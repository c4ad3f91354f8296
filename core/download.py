"""The first download of a Hub model: one phase with bytes, rate and ETA, or a refusal in seconds.

Before any byte moves, one metadata call (with a timeout) lists the repo's files and their sizes: a missing repo,
a gated one, no network, a silent server or a disk without room is refused there, with the way out. Then each
file not yet in the Hugging Face cache is fetched with `hf_hub_download` (the cache layout, auth, redirects and
Xet storage stay huggingface_hub's); a meter counts the bytes through its progress-bar hook and a ticker thread
sends `DownloadProgress` about twice a second.

Resuming: a connection that drops mid-file is resumed by huggingface_hub with an HTTP Range request; a run that is
stopped keeps every file it finished, and the next run fetches only the rest.

Stopping: a stop asked during the download (the TUI's `s`, Ctrl-C in `train`) ends it at the next chunk (1 MiB)
with `Stopped`, saying how many files are in the cache; the next run fetches only the others (the file that was
under way starts over: huggingface_hub 1.x+ deletes a partial file). Before, a stop waited for every file.
"""
from __future__ import annotations

import errno
import fnmatch
import inspect
import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path

from core.errors import InputError, Stopped, TrainerError
from core.events import DownloadProgress, Phase
from core.presets import BUNDLED_MODEL

# What a causal LM needs to load and train (safetensors weights, config, tokenizer, chat template).
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")
TICK_S = 0.5  # DownloadProgress cadence
RATE_WINDOW_S = 5.0  # the rate is the bytes of the last few seconds, so a stall shows as a falling rate
CHUNK_BYTES = 2**20  # bytes between progress updates on plain HTTP (see _chunks)
SPARE_BYTES = 256 * 2**20  # room kept free beyond the files themselves (locks, refs, the OS)
LOGIN = ("log in with `hf auth login` (older installs: `huggingface-cli login`) or set HF_TOKEN=hf_... "
         "(a read token from https://huggingface.co/settings/tokens)")


def timeout_s() -> float:
    """Seconds the Hub may stay silent before a request is given up (huggingface_hub's own variable)."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
    except ValueError:
        return 10.0


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def download_line(e: DownloadProgress) -> str:
    """`1.2 GB / 3.1 GB  38%  45.0 MB/s  ETA 42s  model.safetensors` (the CLI's line, the TUI's status)."""
    pct = 100 * e.done // e.total if e.total > 0 else 100
    parts = [f"{human_bytes(e.done)} / {human_bytes(e.total)}", f"{pct}%"]
    if e.done < e.total:
        parts.append(f"{human_bytes(e.rate_bps)}/s" if e.rate_bps else "measuring speed…")
        if e.eta_s is not None:
            s = int(round(e.eta_s))
            parts.append("ETA " + (f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else
                                   f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"))
        if e.file:
            parts.append(e.file)
    return "  ".join(parts)


def ways_out(repo_id: str) -> str:
    return (f"ways out: (1) on a connected machine run `hf download {repo_id}` and copy ~/.cache/huggingface; "
            f"(2) pass --model /path/to/a/local/folder or a .gguf file; (3) use --model {BUNDLED_MODEL} "
            f"(bundled, works offline, e.g. with --preset cpu)")


def download(repo_id: str, emit=None, stop_event: threading.Event | None = None) -> Path:
    """Fetch what a model needs from the Hub into its cache and return the snapshot folder; `stop_event` set
    ends it at the next chunk with `Stopped` (what arrived stays in the cache for the next run)."""
    from huggingface_hub import HfApi, constants

    endpoint = constants.ENDPOINT
    try:
        info = HfApi().model_info(repo_id, files_metadata=True, timeout=timeout_s())
    except Exception as exc:  # noqa: BLE001 - the Hub client's errors share no base across versions: refusal sorts them
        raise refusal(exc, repo_id, endpoint) from None
    files = {s.rfilename: (s.size or 0) for s in (info.siblings or [])
             if any(fnmatch.fnmatch(s.rfilename, p) for p in ALLOW_PATTERNS)}
    if not any(f.endswith(".safetensors") for f in files):
        raise InputError(f"model {repo_id} has no safetensors weights on the Hub",
                         hint="this trainer loads safetensors only: pick another repo, or convert it and pass "
                              "the local folder with --model")
    cache = Path(constants.HF_HUB_CACHE)
    missing = {f: n for f, n in files.items() if not _cached(repo_id, f, info.sha, cache)}
    total, need = sum(files.values()), sum(missing.values())
    check_disk(cache, need, repo_id)
    if missing and emit:
        emit(Phase("downloading model", f"{repo_id}: {len(missing)} file(s), {human_bytes(need)} into {cache}"))
    meter = Meter(emit, repo_id, total, total - need, stop_event, cached_files=len(files) - len(missing))
    first = None
    try:
        with meter.running(), _quiet_bars(emit is not None), _chunks(CHUNK_BYTES):
            # Small files first: a wrong tokenizer or config shows before gigabytes of weights move.
            for name in sorted(files, key=lambda f: (f in missing, files[f])):
                meter.check_stop()
                meter.file = name
                path = _fetch(repo_id, name, cache, meter if emit or stop_event else None)
                if name in missing:
                    meter.kept = (meter.kept[0] + 1, meter.kept[1] + files[name])
                first = first or Path(path).parents[name.count("/")]  # the snapshot folder
    except TrainerError:
        raise
    except Exception as exc:  # noqa: BLE001 - likewise; an error refusal does not know keeps its traceback
        raise refusal(exc, repo_id, endpoint) from None
    return first


def _fetch(repo_id: str, name: str, cache: Path, meter: "Meter | None") -> str:
    from huggingface_hub import hf_hub_download

    kwargs = dict(cache_dir=str(cache), etag_timeout=timeout_s())
    if meter is not None and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = meter.bar_class()
    # The default revision each time: the cache records main → commit, which an offline run later looks up.
    return hf_hub_download(repo_id, name, **kwargs)


def _cached(repo_id: str, name: str, commit: str | None, cache: Path) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, name, cache_dir=str(cache), revision=commit)
    return isinstance(found, str) and os.path.isfile(found)


def check_disk(cache: Path, need: int, repo_id: str) -> None:
    """Refuse before downloading when the cache's disk cannot hold the files (plus a little room)."""
    if need <= 0:
        return
    where = cache
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < need + SPARE_BYTES:
        raise InputError(f"not enough disk space to download {repo_id}: it needs {human_bytes(need)} in {cache}, "
                         f"and that disk has {human_bytes(free)} free",
                         hint="free some space there, or point the Hugging Face cache at a bigger disk with "
                              "HF_HOME=/path/with/room (or HF_HUB_CACHE), or pass --model a local folder")


def refusal(exc: BaseException, repo_id: str, endpoint: str) -> TrainerError:
    """One sentence and the way out for each way a download fails."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    chain = _chain(exc)
    for e in chain:
        if isinstance(e, GatedRepoError):
            return InputError(f"model {repo_id} is gated: the Hub only serves it to a logged-in account that "
                              f"accepted its terms", hint=f"accept them on {endpoint}/{repo_id}, then {LOGIN}")
        if isinstance(e, RepositoryNotFoundError):
            return InputError(f"model {repo_id} does not exist on the Hub ({endpoint}), or it is private",
                              hint="check the id (they look like Qwen/Qwen2.5-1.5B-Instruct); for a private "
                                   f"repo, {LOGIN}")
        if isinstance(e, HfHubHTTPError) and getattr(e.response, "status_code", None) in (401, 403):
            return InputError(f"the Hub refused access to {repo_id} (HTTP {e.response.status_code}): it needs a "
                              "token with access to this repo", hint=LOGIN)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return TrainerError(f"the disk filled up while downloading {repo_id}",
                                hint="free some space or set HF_HOME to a bigger disk, then run again: the files "
                                     "already downloaded are kept")
    names = " ".join(type(e).__name__ for e in chain)
    if "Timeout" in names:
        return TrainerError(f"the Hub at {endpoint} stopped answering (nothing for {timeout_s():.0f} s) while "
                            f"getting {repo_id}", hint="check the connection and run again (finished files are "
                                                       "kept); HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT set "
                                                       "the wait; " + ways_out(repo_id))
    if "OfflineModeIsEnabled" in names:
        return InputError(f"model {repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                          hint=ways_out(repo_id))
    if any(k in names for k in ("Connect", "NetworkError", "LocalEntryNotFound", "ProxyError")):
        return TrainerError(f"cannot reach the Hugging Face Hub at {endpoint} to download {repo_id}",
                            hint=ways_out(repo_id))
    for e in chain:
        if isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None:
            return TrainerError(f"the Hub answered HTTP {e.response.status_code} for {repo_id}",
                                hint="try again later; " + ways_out(repo_id))
    if not isinstance(exc, OSError):  # not the network nor the disk: maybe a bug of ours; keep where it happened
        import sys
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return TrainerError(f"could not download {repo_id}: {type(exc).__name__}: {exc}".splitlines()[0],
                        hint=ways_out(repo_id))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


class _chunks:
    """huggingface_hub hands HTTP bytes on (to the file and its progress hook) in chunks of DOWNLOAD_CHUNK_SIZE
    (10 MiB), read at each download: smaller ones update the bytes more often and lose less when a connection
    drops (the retry's Range starts after the last whole chunk)."""

    def __init__(self, size: int):
        self.size = size

    def __enter__(self):
        from huggingface_hub import constants

        self.was = getattr(constants, "DOWNLOAD_CHUNK_SIZE", None)
        if self.was is not None:
            constants.DOWNLOAD_CHUNK_SIZE = min(self.was, self.size)
        return self

    def __exit__(self, *exc):
        from huggingface_hub import constants

        if self.was is not None:
            constants.DOWNLOAD_CHUNK_SIZE = self.was


class _quiet_bars:
    """huggingface_hub's own tqdm bars off while our events report the bytes (they would go to a run's stderr)."""

    def __init__(self, active: bool):
        self.active = active

    def __enter__(self):
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

        self.was = are_progress_bars_disabled()
        if self.active:
            disable_progress_bars()
        return self

    def __exit__(self, *exc):
        from huggingface_hub.utils import enable_progress_bars

        if self.active and not self.was:
            enable_progress_bars()


class Meter:
    """Bytes counted through huggingface_hub's progress-bar hook; a ticker thread turns them into events."""

    def __init__(self, emit, repo_id: str, total: int, done: int, stop_event: threading.Event | None = None,
                 cached_files: int = 0):
        """`done` bytes in `cached_files` files are in the cache already."""
        self.emit, self.repo_id, self.total = emit, repo_id, total
        self.stop_event = stop_event
        self.kept = (cached_files, done)  # (files, bytes) in the cache so far: what a stop leaves for the next run
        self.done = self._start = done
        self.file = ""
        self._shown = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._window: deque[tuple[float, int]] = deque()

    def add(self, n) -> None:
        with self._lock:
            self.done += int(n or 0)
        self.check_stop()  # called from huggingface_hub's transfer loop: raising here ends the transfer

    def check_stop(self) -> None:
        if self.stop_event is None or not self.stop_event.is_set():
            return
        files, done = self.kept
        raise Stopped(f"stopped while downloading {self.repo_id}: {files} file(s), {human_bytes(done)} of "
                      f"{human_bytes(self.total)}, are in the Hugging Face cache",
                      hint="run the same command again: the files already there are not fetched again")

    def bar_class(self):
        meter = self

        class Bar:  # the parts of tqdm's interface that huggingface_hub calls
            format_dict: dict = {}

            def __init__(self, *args, total=None, initial=0, **kwargs):
                self.total, self.n = total, initial or 0
                meter.add(initial)  # bytes a resumed .incomplete file already holds

            def update(self, n=1):
                self.n += n or 0
                meter.add(n)

            def update_transfer(self, n=1):
                """Network bytes of an Xet download. Declared on the class: huggingface_hub then feeds one bar
                (written bytes to update, network bytes here) instead of two that would count each byte twice."""

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def __getattr__(self, name):  # set_postfix_str, refresh, close, ...: nothing to do
                return lambda *a, **k: None

        return Bar

    def event(self) -> DownloadProgress:
        now = time.monotonic()
        with self._lock:
            done = min(max(self.done, self._shown), self.total) if self.total else self.done
        if done == self._start:  # the clock starts with the first byte, not with the metadata calls before it
            self._window.clear()
        self._window.append((now, done))
        while len(self._window) > 2 and now - self._window[0][0] > RATE_WINDOW_S:
            self._window.popleft()
        t0, d0 = self._window[0]
        rate = (done - d0) / (now - t0) if now - t0 >= 1.0 else None
        eta = (self.total - done) / rate if rate else None
        self._shown = done
        return DownloadProgress("downloading model", done, self.total, repo_id=self.repo_id, file=self.file,
                                rate_bps=rate, eta_s=eta)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.emit(self.event())

    def running(self):
        meter = self

        class _Running:
            def __enter__(self):
                if meter.emit:
                    meter.emit(meter.event())
                    meter._thread = threading.Thread(target=meter._tick, name="download-meter", daemon=True)
                    meter._thread.start()

            def __exit__(self, exc_type, *rest):
                meter._stop.set()
                if meter.emit:
                    meter._thread.join()
                    if exc_type is None:
                        with meter._lock:
                            meter.done = meter.total  # every file is in the cache, whatever the hook counted
                        meter.emit(meter.event())
                return False

        return _Running()
