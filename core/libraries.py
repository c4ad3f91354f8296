"""The libraries a run drives (transformers, peft, trl, bitsandbytes, torch): their chatter quieted, in this one place,
and their versions recorded. Asked by `core`'s import, training, bench, merge and the model conversion alike."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import platform
import sys
import warnings

# Third-party notices dropped where they are born, so that no library line comes before (or inside) our own output
# in `doctor`, `check`, `train`, `presets` or the TUI. Each is (logger, start of the message, why it means nothing
# to our user). `make test-newest` runs tests/test_first_lines.py on today's releases: a new notice shows up there.
NOTICES = (
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward",
     "bitsandbytes >= 0.48, on a CPU with AVX-512 bf16, looks for a fused 4-bit CPU kernel through the optional "
     "`kernels` package at import: without it 4-bit layers on the CPU take bitsandbytes' built-in path; the cpu "
     "preset does not quantize, and `doctor` says in words that 4-bit needs CUDA"),
    ("kernels._internals.hf_hub", "Skipping publisher trust check",
     "the same import under HF_HUB_OFFLINE=1 with kernels >= 0.19 (which transformers 5.25 requires): bitsandbytes "
     "asks the Hub for that kernel, and offline it cannot check its publisher"),
)
# The libraries' own switches, set only where the user has not set them: transformers' advisory logging (its root
# logger is reset from this variable when transformers is imported, so a level set on it earlier would not hold).
SWITCHES = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
# Python warnings raised from inside these packages are advice to their own callers (us), not to our user.
_WARNING_MODULES = r"(transformers|peft|trl|bitsandbytes|torch|accelerate|kernels)\b.*"


class _DropNotice(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def drop_library_notices() -> None:
    """Set once, when `core` is first imported, before any of its modules can import the libraries. Imports none."""
    for name, start, _why in NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.start == start for f in logger.filters):
            logger.addFilter(_DropNotice(start))
    for name, value in SWITCHES.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", module=_WARNING_MODULES)


def quiet_libraries() -> None:
    """After transformers is imported: its progress bars off (our events say progress) and the chatter of
    libraries that have no switch of their own."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("peft").setLevel(logging.ERROR)


@contextlib.contextmanager
def held_stderr():
    """What a library writes to stderr inside the block is held back, and shown only if the block fails. For code
    with no switch of its own: transformers' GGUF reader draws a raw tqdm bar (`from tqdm.auto import tqdm`, which
    neither its verbosity nor its disable_progress_bar reaches) before `check` prints its first line."""
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except BaseException:
        sys.stderr.write(held.getvalue())
        raise


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out
