"""The libraries a run drives (transformers, peft, trl, bitsandbytes, torch): their chatter quieted and their
versions recorded. Asked by training, bench and merge alike."""
from __future__ import annotations

import platform


def quiet_libraries() -> None:
    """Library chatter (progress bars, advisory warnings) would interleave with our events."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("peft").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(transformers|peft|trl|bitsandbytes|torch)\b.*")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out
