"""Hand the adapter to GenAptitude: a zip for Colab downloads, or an install into the LoRA root + `.env`."""
from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from core.runs.output import adapter_folder, atomic_path, swap_into_place, write_atomic

DEFAULT_LORA_ROOT = "~/genaptitude-llm/ai-assets/lora"
ENV_KEY = "RAISE_LORA_PATH"
SKIP = ("checkpoints", "tensorboard", "train.log")  # resume state and logs stay behind


def _adapter(folder: str) -> Path:
    return adapter_folder(folder)  # (core.runs.output: the one refusal of a folder without an adapter)


def _files(adapter: Path):
    for p in sorted(adapter.rglob("*")):
        rel = p.relative_to(adapter)
        if p.is_file() and rel.parts[0] not in SKIP:
            yield p, rel


def export_zip(adapter_dir: str, zip_path: str) -> Path:
    adapter = _adapter(adapter_dir)
    target = Path(zip_path).expanduser().resolve()
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p, rel in _files(adapter):
            zf.write(p, Path(adapter.name) / rel)
    return target


def install(adapter_dir: str, lora_root: str = DEFAULT_LORA_ROOT, env_file: str | None = None) -> tuple[Path, Path | None]:
    """Copy the adapter under `lora_root/<name>` (atomically) and point RAISE_LORA_PATH at it in `env_file`."""
    adapter = _adapter(adapter_dir)
    root = Path(lora_root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / adapter.name
    if dest.resolve() != adapter:
        tmp = Path(tempfile.mkdtemp(prefix=f".{adapter.name}-", dir=root))
        for p, rel in _files(adapter):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, tmp / rel)
        swap_into_place(tmp, dest)
    backup = set_env(Path(env_file).expanduser(), dest) if env_file else None
    return dest, backup


def set_env(env_file: Path, value: Path) -> Path | None:
    """Exactly one RAISE_LORA_PATH line; every other line and comment kept; old file backed up; atomic write."""
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    new_line = f"{ENV_KEY}={value}"
    out, placed = [], False
    for line in lines:
        key = line.strip().removeprefix("export ").split("=", 1)[0].strip()
        if key == ENV_KEY and not line.lstrip().startswith("#"):
            if not placed:
                out.append(new_line)
                placed = True
            continue  # drop duplicates
        out.append(line)
    if not placed:
        out.append(new_line)
    backup = None
    if env_file.exists():
        backup = env_file.with_name(f"{env_file.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(env_file, backup)
    env_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(env_file, "\n".join(out) + "\n")
    return backup
