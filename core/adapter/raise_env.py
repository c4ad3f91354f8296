"""`export --gguf --raise-env`: put the GGUF and its tokenizer.json where RAISE (GenAptitude's new name) loads them.

RAISE's local LLM (candle's quantized_qwen2, crates/raise-core/src/ai/llm/native_engine.rs) reads one Qwen2 GGUF
and a Hugging Face tokenizer.json named by its `ai_llm` component's settings `rust_model_file` and
`rust_tokenizer_file`, from `<PATH_RAISE_ASSET>/models/`; without PATH_RAISE_ASSET, from
`<PATH_RAISE_DOMAIN>/_system/ai-assets/models/` (kernel/assets.rs). Both keys come from RAISE's `.env`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.errors import InputError
from core.runs.output import PARTIAL

ASSET_KEY, DOMAIN_KEY = "PATH_RAISE_ASSET", "PATH_RAISE_DOMAIN"
DOMAIN_ASSETS = Path("_system") / "ai-assets"
RAISE_ARCHS = ("qwen2",)  # candle's quantized_qwen2 is the only local model RAISE loads


def check_loadable(arch: str, model: str) -> None:
    """RAISE loads Qwen2 GGUFs only: another base is refused for --raise-env, before any work."""
    if arch not in RAISE_ARCHS:
        raise InputError(f"RAISE loads Qwen2 GGUF files only (candle's quantized_qwen2) and the base {model} is a "
                         f"{arch} model", hint="train on a Qwen2.5 model for RAISE; without --raise-env the GGUF "
                         "still works in llama.cpp and Ollama")


def read_env(env_file: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env (`export ` prefixes, quotes and comments allowed), as dotenv reads them."""
    values: dict[str, str] = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1:
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].strip()
        values[key] = value
    return values


def models_dir(env_file: str | os.PathLike) -> Path:
    """`<PATH_RAISE_ASSET>/models`, else `<PATH_RAISE_DOMAIN>/_system/ai-assets/models`. A relative path is taken
    from the .env's folder; ~ and $VARS are expanded."""
    env = Path(env_file).expanduser().resolve()
    if not env.is_file():
        raise InputError(f"RAISE's .env {env} does not exist", hint="give --raise-env the .env of your RAISE checkout")
    values = read_env(env)
    for key, tail in ((ASSET_KEY, Path()), (DOMAIN_KEY, DOMAIN_ASSETS)):
        if values.get(key):
            root = Path(os.path.expandvars(values[key])).expanduser()
            return (root if root.is_absolute() else env.parent / root).resolve() / tail / "models"
    raise InputError(f"{env} sets neither {ASSET_KEY} nor {DOMAIN_KEY}",
                     hint=f"add {ASSET_KEY}=/path/to/ai-assets to it (RAISE reads its models from there)")


def targets(models: Path, files: tuple[Path, ...], overwrite: bool) -> list[Path]:
    """Where each file goes in `models`; a different file already there is refused without --overwrite."""
    dests = [models / f.name for f in files]
    for dest in dests:
        if dest.is_dir() or (dest.exists() and not overwrite):
            raise InputError(f"{dest} already exists; it is never overwritten silently",
                             hint="pass --overwrite to replace it, or choose another --out name")
    return dests


def install(files: tuple[Path, ...], models: Path, overwrite: bool) -> list[Path]:
    """Copy `files` into `models` (created if needed), each into a .partial first, renamed once all are
    copied: a failure (read-only, full) leaves nothing behind but what was there before."""
    dests = targets(models, files, overwrite)
    work = [d.with_name(d.name + PARTIAL) for d in dests]
    try:
        models.mkdir(parents=True, exist_ok=True)
        for src, tmp in zip(files, work):
            shutil.copyfile(src, tmp)
        for tmp, dest in zip(work, dests):
            os.replace(tmp, dest)
    except OSError as exc:
        for tmp in work:
            tmp.unlink(missing_ok=True)
        raise InputError(f"could not copy into {models}: {exc.strerror or exc}",
                         hint="check that the folder is writable and has room (the GGUF's size)") from None
    return dests


def settings(gguf_file: Path, tokenizer: Path) -> list[str]:
    """The two lines for RAISE's `ai_llm` component."""
    return [f"rust_model_file = {gguf_file.name}", f"rust_tokenizer_file = {tokenizer.name}"]
