"""genaptitude-trainer engine: dataset checks, presets, GPU probing, QLoRA training, evaluation. No UI here."""
from core import startup as _startup  # noqa: F401,I001 - first: the start-up clock (core/startup.py)

from core.libraries import drop_library_notices as _drop_library_notices

__version__ = "0.1.0"

# Before any module of ours can import bitsandbytes, transformers or peft (core/libraries.py says which and why).
_drop_library_notices()
