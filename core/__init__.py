"""genaptitude-trainer engine: dataset checks, presets, GPU probing, QLoRA training, evaluation. No UI here."""

__version__ = "0.1.0"
