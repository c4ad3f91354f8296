"""genaptitude-trainer engine: dataset checks, presets, GPU probing, QLoRA training, evaluation. No UI here."""
from core import startup as _startup  # noqa: F401,I001 - first: the start-up clock (core/startup.py)

import logging as _logging

__version__ = "0.1.0"


def _drop_bnb_cpu_kernel_notice(record: _logging.LogRecord) -> bool:
    # bitsandbytes (≥ 0.48), when imported on a CPU with AVX-512 bf16, tries to fetch a fused 4-bit CPU kernel
    # through the optional `kernels` package and logs a warning when it is missing: the first line of every command
    # on a machine without CUDA. It only means 4-bit layers on the CPU take bitsandbytes' slower built-in path; the
    # cpu preset does not quantize, and `doctor` says in words that 4-bit needs CUDA. Set here, before any module of
    # ours can import bitsandbytes (peft and transformers import it too).
    return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_drop_bnb_cpu_kernel_notice)
