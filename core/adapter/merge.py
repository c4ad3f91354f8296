"""`merge`: the base model with the adapter folded into its weights, saved in bf16, for tools that want one model.

GenAptitude itself loads the adapter (RAISE_LORA_PATH); a merged folder is for everything else (vLLM, llama.cpp
after GGUF conversion, plain `AutoModelForCausalLM`). It is written into `<out>.partial`, then renamed into
place, so a crash never leaves a half-written model. The merge runs on the CPU: no GPU memory is needed.

GGUF: `export --gguf` writes one itself (core/adapter/gguf_export.py, from `merged_model` below) for the qwen2 and
llama architectures; for other architectures, llama.cpp's `convert_hf_to_gguf.py` converts this merged folder, and
`gguf_instructions` says whether one is installed here.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from core.errors import InputError, TrainerError
from core.runs.output import PARTIAL, adapter_folder, is_work, read_run_json, swap_into_place, work_of

CONVERTER_NAMES = ("convert_hf_to_gguf.py", "convert-hf-to-gguf.py")  # the second is llama.cpp's old name
LLAMA_CPP = "https://github.com/ggml-org/llama.cpp"


def base_model_of(adapter: Path) -> tuple[str | None, bool]:
    """The base the adapter was trained on (run.json, else adapter_config.json) and its trust_remote_code.
    A damaged run.json is refused (output.read_run_json), not skipped: it would hide which base was used."""
    config = read_run_json(adapter).get("config", {})
    if config.get("model"):
        return str(config["model"]), bool(config.get("trust_remote_code", False))
    try:
        data = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, False
    model = data.get("base_model_name_or_path") if isinstance(data, dict) else None
    return (str(model), False) if model else (None, False)


def _check_paths(adapter_dir: str, out_dir: str, overwrite: bool) -> tuple[Path, Path]:
    adapter = adapter_folder(adapter_dir)
    out = Path(out_dir).expanduser().resolve()
    if out == adapter or out in adapter.parents or adapter in out.parents:
        raise InputError(f"--out {out} overlaps the adapter folder {adapter}",
                         hint="write the merged model to a folder of its own, e.g. --out merged-model")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder", hint="choose another --out")
    if is_work(out):  # the merge writes into work_of(out) first: that must be another folder
        raise InputError(f"--out {out} ends in {PARTIAL}, the name of a work folder", hint="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} already holds files; it is never overwritten silently",
                         hint="pass --overwrite to replace it, or choose another --out")
    return adapter, out


def merge(adapter_dir: str, out_dir: str, *, model: str | None = None, overwrite: bool = False,
          trust_remote_code: bool = False, say: Callable[[str], None] = lambda line: None) -> Path:
    """Load the base in bf16, apply the adapter, `merge_and_unload()`, save safetensors + tokenizer into `out_dir`."""
    adapter, out = _check_paths(adapter_dir, out_dir, overwrite)
    import torch

    merged, tok, _ = merged_model(adapter, model=model, trust_remote_code=trust_remote_code, dtype=torch.bfloat16,
                                  say=say)

    work = work_of(out)
    if work.exists():
        shutil.rmtree(work)  # a merge that died half-way
    say(f"[saving] {out}")
    try:
        merged.save_pretrained(str(work))
        tok.save_pretrained(str(work))
    except BaseException as exc:
        from safetensors import SafetensorError

        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):  # a full disk (safetensors says so in its own error type)
            raise TrainerError(f"could not save the merged model into {work}: {exc}",
                               hint="check free disk space (about 2 bytes per parameter)") from exc
        raise  # a bug, or ^C: its own traceback
    return swap_into_place(work, out)


def base_of(adapter: Path, model: str | None = None, trust_remote_code: bool = False) -> tuple[str, bool]:
    """The base to merge into (`model`, else the one the adapter says it was trained on) and its trust_remote_code;
    refused in one sentence when neither says."""
    trained_on, trusted = base_model_of(adapter)
    model = model or trained_on
    if not model:
        raise InputError(f"{adapter} does not say which base model it was trained on (no run.json)",
                         hint="pass --model with that base (Hub id, local folder or .gguf)")
    return model, trust_remote_code or trusted


def merged_model(adapter: Path, *, model: str | None = None, trust_remote_code: bool = False, dtype=None,
                 say: Callable[[str], None] = lambda line: None):
    """The base with the adapter folded in, on the CPU, and the tokenizer to ship with it: (model, tokenizer, base
    folder). The one merge `merge` and the GGUF export share. The base loads unquantized in `dtype` (bf16 by
    default): an adapter trained on an NF4 base merges into the full-precision weights it was quantized from."""
    import torch
    from transformers import AutoModelForCausalLM

    from core.libraries import quiet_libraries
    from core.models import resolve, tokenizer_from

    model, trust_remote_code = base_of(adapter, model, trust_remote_code)
    dtype = dtype or torch.bfloat16
    quiet_libraries()
    path = resolve(model, trust_remote_code=trust_remote_code,
                   on_phase=lambda name, detail: say(f"[{name}] {detail}"))
    say(f"[loading] base {model} in {str(dtype).removeprefix('torch.')} on the CPU")
    base = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
    from peft import PeftModel

    try:
        tuned = PeftModel.from_pretrained(base, str(adapter))
    except (RuntimeError, ValueError, KeyError) as exc:  # shape mismatch, missing modules: the wrong base
        raise InputError(f"the adapter in {adapter} does not fit base model {model}: {str(exc).splitlines()[0]}",
                         hint="pass --model with the base it was trained on (run.json's config.model)") from None
    say("[merging] folding the LoRA weights into the base weights")
    merged = tuned.merge_and_unload()
    merged.to(dtype)
    tok = tokenizer_from(adapter if (adapter / "tokenizer_config.json").is_file() else path, trust_remote_code)
    _stop_at_end_of_turn(merged, tok)
    return merged, tok, path


def _stop_at_end_of_turn(model, tok) -> None:
    """The merged model's generation_config stops at the chat template's end of turn as well as at EOS
    (core.data.spans.stop_token_ids, what evaluate and chat stop at): a base whose EOS is another token (a GGUF
    conversion named <|im_start|> EOS) would otherwise run past every answer in whatever loads the merged folder."""
    from core.data.spans import stop_token_ids

    stops = stop_token_ids(tok)
    if stops and getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = stops[0] if len(stops) == 1 else stops


def find_converter() -> Path | None:
    """llama.cpp's HF→GGUF script: on PATH, in $LLAMA_CPP_DIR, ~/llama.cpp or ./llama.cpp."""
    for name in CONVERTER_NAMES:
        if found := shutil.which(name):
            return Path(found)
    folders = [os.environ.get("LLAMA_CPP_DIR"), "~/llama.cpp", "llama.cpp"]
    for folder in filter(None, folders):
        for name in CONVERTER_NAMES:
            candidate = Path(folder).expanduser() / name
            if candidate.is_file():
                return candidate.resolve()
    return None


def gguf_instructions(merged: Path, converter: Path | None = None) -> str:
    """What to run for a GGUF file, or plainly that no converter is installed and how to get one.

    The converter gets its own virtual environment: llama.cpp's requirements pin transformers < 5 and an older
    numpy, which would break this tool's environment.
    """
    converter = converter or find_converter()
    gguf = merged.with_name(merged.name + ".gguf")
    if converter is not None:
        return (f"GGUF: llama.cpp's converter is at {converter}; with a Python that has llama.cpp's "
                "requirements (its own venv, see the README), run:\n"
                f"  python {converter} {merged} --outtype bf16 --outfile {gguf}\n"
                "  (then llama.cpp's llama-quantize makes a smaller file, e.g. Q4_K_M)")
    return ("GGUF: no converter is installed here. This tool does not write GGUF, and the `gguf` package it uses "
            "reads GGUF files but cannot convert a Hugging Face model. llama.cpp's convert_hf_to_gguf.py can, "
            "in a virtual environment of its own (its requirements pin transformers < 5):\n"
            f"  git clone --depth 1 {LLAMA_CPP}\n"
            "  python -m venv gguf-venv && gguf-venv/bin/pip install -r "
            "llama.cpp/requirements/requirements-convert_hf_to_gguf.txt\n"
            f"  gguf-venv/bin/python llama.cpp/convert_hf_to_gguf.py {merged} --outtype bf16 --outfile {gguf}\n"
            "  (with LLAMA_CPP_DIR set to a llama.cpp checkout, merge prints the command for it)")
