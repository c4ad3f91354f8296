"""`export --gguf`: the adapter merged into its base and written as ONE GGUF file, with `NAME.tokenizer.json` beside.

What llama.cpp, Ollama and RAISE's candle loader (`quantized_qwen2`) read: the base's architecture (qwen2 or llama),
its hyper-parameters, its byte-level BPE tokenizer (tokens, types, merges, special ids) and chat template as
metadata, and the merged weights. Written by the `gguf` package alone (pure Python: no llama.cpp checkout, no
compiler), which quantizes F16, BF16, Q8_0, Q5_1, Q4_1 and Q4_0 itself; the K-quants (Q4_K_M…) need llama.cpp's
`llama-quantize` run on the file this writes.

The merge is `merge.merged_model`'s, in fp32 (the base unquantized, whatever the run trained on). The file is
written into `NAME.gguf.partial` one tensor at a time (header first: each tensor's type and size are known before
its data), then renamed: a failure leaves nothing half-written. `emit` receives Phase, LogLine and one
TensorWritten event a tensor.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError
from core.events import EventSink, LogLine, Phase, TensorWritten
from core.runs.output import PARTIAL, adapter_folder as output_adapter_folder

# --gguf TYPE -> the gguf package's GGMLQuantizationType name. q8_0 by default: 8.5 bits a weight, answers as the
# merged model does (measured: README "GenAptitude / RAISE"); q5_1/q4_1/q4_0 are smaller and lose more.
TYPES = {"q8_0": "Q8_0", "q5_1": "Q5_1", "q4_1": "Q4_1", "q4_0": "Q4_0", "f16": "F16", "bf16": "BF16"}
DEFAULT_TYPE = "q8_0"
# A Hugging Face config's model_type -> the gguf package's MODEL_ARCH member (and llama.cpp's architecture name).
ARCHS = {"qwen2": "QWEN2", "llama": "LLAMA"}
# The byte-level pre-tokenizers llama.cpp knows, as their tokenizer.json writes them -> tokenizer.ggml.pre.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class Written:
    """What an export wrote: the GGUF file, the tokenizer.json beside it, the base's architecture and the type."""

    gguf: Path
    tokenizer: Path
    arch: str
    qtype: str
    installed: tuple[Path, ...] = ()  # the two copies in RAISE's models/ folder (--raise-env)

    def lines(self) -> list[str]:
        """What the CLI prints and the TUI logs when it is done."""
        from core.adapter.raise_env import settings

        out = [f"wrote {self.gguf} ({_size(self.gguf)}, {self.qtype}, {self.arch}) and {self.tokenizer.name} "
               f"({_size(self.tokenizer)})"]
        if self.installed:
            out.append(f"copied both into {self.installed[0].parent}")
            out.append("set in RAISE's ai_llm component: " + ", ".join(settings(*self.installed)))
        return out


def _size(path: Path) -> str:
    size = path.stat().st_size
    return (f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB" if size >= 2**20
            else f"{size / 2**10:.0f} KiB")


def tokenizer_path(gguf_file: Path) -> Path:
    """`NAME.tokenizer.json` beside `NAME.gguf` (RAISE's rust_tokenizer_file; other runtimes ignore it)."""
    return gguf_file.with_name(gguf_file.name.removesuffix(".gguf") + ".tokenizer.json")


def default_out(adapter: str | os.PathLike, qtype: str = DEFAULT_TYPE) -> Path:
    """`<adapter>-<type>.gguf`, next to the adapter folder."""
    folder = Path(adapter).expanduser().resolve()
    return folder.with_name(f"{folder.name}-{qtype}.gguf")


def check_out(out: str | os.PathLike, overwrite: bool) -> tuple[Path, Path]:
    """The two files an export writes, refused before any work when they would replace something silently."""
    gguf_file = Path(out).expanduser().resolve()
    if gguf_file.suffix != ".gguf":
        raise InputError(f"--out {gguf_file} does not end in .gguf", hint="name the file NAME.gguf")
    for path in (gguf_file, tokenizer_path(gguf_file)):
        if path.is_dir():
            raise InputError(f"{path} is a folder", hint="choose another --out")
        if path.exists() and not overwrite:
            raise InputError(f"{path} already exists; it is never overwritten silently",
                             hint="pass --overwrite to replace it, or choose another --out")
    return gguf_file, tokenizer_path(gguf_file)


def adapter_folder(adapter_dir: str | os.PathLike) -> Path:
    return output_adapter_folder(adapter_dir)  # (core.runs.output: the one refusal of a folder without an adapter)


def base_arch(adapter: Path, model: str | None = None, trust_remote_code: bool = False) -> str:
    """The base's architecture as GGUF names it (qwen2, llama), found before any weight loads; a base the writer
    cannot map is refused here. A base not in the cache with HF_HUB_OFFLINE set is refused by core.models."""
    from core.adapter.merge import base_of
    from core.models import resolve

    model, trust_remote_code = base_of(adapter, model, trust_remote_code)
    config = _config(resolve(model, trust_remote_code=trust_remote_code))
    return arch_of(config, model)


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the base's {folder / 'config.json'}: {exc}",
                         hint="check the base model folder") from None


def arch_of(config: dict, model: str) -> str:
    """One rule: which architectures this writer maps, and the sentence for the others."""
    import gguf

    model_type = str(config.get("model_type", ""))
    if model_type not in ARCHS:
        raise InputError(f"the base {model} is a {model_type or 'model of unknown type'}: this GGUF writer maps "
                         f"{' and '.join(ARCHS)} models only",
                         hint="use `genaptitude-trainer merge`, then llama.cpp's convert_hf_to_gguf.py")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise InputError(f"the base {model} scales its RoPE ({rope.get('rope_type') or rope.get('type')}), which "
                         "this GGUF writer does not write", hint="use `genaptitude-trainer merge`, then llama.cpp's "
                         "convert_hf_to_gguf.py")
    return gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, ARCHS[model_type])]


def ggml_type(name: str, shape: tuple[int, ...], qtype: str):
    """The type each tensor is stored in. 1-D tensors (norms, biases) stay F32: tiny, and runtimes add them in
    F32. token_embd, which is also the tied output head, stays F16 under a quantized type: with it in Q8_0 or
    Q5_1, llama.cpp's greedy answers went wrong on the bundled model while transformers' loader (which
    dequantizes) still answered right (measured, ../shared CONTEXT "Where the model goes"). A row whose length
    is not a whole number of quantization blocks is stored F16, as llama.cpp's converter does."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

    target = T[TYPES[qtype]]
    if len(shape) < 2:
        return T.F32
    if target in (T.F16, T.BF16):
        return target
    if name == "token_embd.weight" or shape[-1] % GGML_QUANT_SIZES[target][0]:
        return T.F16
    return target


def write_gguf(adapter_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, qtype: str = DEFAULT_TYPE,
               model: str | None = None, overwrite: bool = False, trust_remote_code: bool = False,
               raise_env: str | os.PathLike | None = None, emit: EventSink = lambda e: None) -> Written:
    """Merge, then write `out` (default `<adapter>-<type>.gguf`) and its tokenizer.json; with `raise_env`, copy
    both into that RAISE's models folder. Every refusal comes before the merge: not an adapter, an unknown type, a
    file in the way (here or in RAISE's folder), a base not found or not mapped, a .env without the paths, a
    base RAISE cannot load."""
    if qtype not in TYPES:
        raise InputError(f"--gguf {qtype} is not a type this writer makes ({', '.join(TYPES)})",
                         hint="K-quants (Q4_K_M…): write q8_0 or f16 here, then run llama.cpp's llama-quantize")
    adapter = adapter_folder(adapter_dir)
    gguf_file, tok_file = check_out(out or default_out(adapter, qtype), overwrite)
    arch = base_arch(adapter, model, trust_remote_code)
    if raise_env is not None:
        from core.adapter import raise_env as raise_assets
        from core.adapter.merge import base_of

        raise_assets.check_loadable(arch, base_of(adapter, model)[0])
        models = raise_assets.models_dir(raise_env)
        raise_assets.targets(models, (gguf_file, tok_file), overwrite)

    import torch

    from core.adapter.merge import merged_model

    emit(Phase("merging", f"{adapter.name} into its base (fp32, on the CPU)"))
    merged, tok, _ = merged_model(adapter, model=model, trust_remote_code=trust_remote_code, dtype=torch.float32,
                                  say=lambda line: emit(LogLine(line)))
    emit(Phase("writing gguf", f"{gguf_file.name} ({qtype}, {arch})"))
    with tempfile.TemporaryDirectory(prefix="gguf-tokenizer-") as tmp:
        tok.save_pretrained(tmp)
        work = [gguf_file.with_name(gguf_file.name + PARTIAL), tok_file.with_name(tok_file.name + PARTIAL)]
        try:
            _write(work[0], merged, tok, Path(tmp) / "tokenizer.json", arch, qtype, emit)
            shutil.copyfile(Path(tmp) / "tokenizer.json", work[1])
            os.replace(work[1], tok_file)
            os.replace(work[0], gguf_file)
        except BaseException as exc:
            for path in work:
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError):  # read-only folder, full disk: the system's reason, nothing left behind
                raise InputError(f"could not write {gguf_file}: {exc.strerror or exc}",
                                 hint="write it somewhere writable with room for it (--out)") from None
            raise
    if raise_env is None:
        return Written(gguf_file, tok_file, arch, qtype)
    emit(Phase("copying", f"into {models}"))
    return Written(gguf_file, tok_file, arch, qtype, tuple(raise_assets.install((gguf_file, tok_file), models,
                                                                                 overwrite)))


# -- the file ------------------------------------------------------------------------------------------------
def _write(path: Path, merged, tok, tokenizer_json: Path, arch: str, qtype: str, emit: EventSink) -> None:
    import gguf
    import numpy as np

    config = merged.config
    tensors = list(_tensors(merged, arch))
    writer = gguf.GGUFWriter(path=None, arch=arch)
    _hyper_parameters(writer, config, qtype)
    _tokenizer(writer, tok, tokenizer_json, config.vocab_size)
    plan = []
    for name, get in tensors:
        shape = get.shape
        kind = ggml_type(name, shape, qtype)
        if kind in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            dtype = np.float32 if kind == gguf.GGMLQuantizationType.F32 else np.float16
            writer.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
        else:
            byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, kind)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=kind)
        plan.append((name, get, kind))
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for done, (name, get, kind) in enumerate(plan, start=1):
        data = gguf.quants.quantize(get(), kind)
        writer.write_tensor_data(data)
        emit(TensorWritten(phase="gguf", done=done, total=len(plan), tensor=name, ggml_type=kind.name,
                           shape=tuple(reversed(get.shape))))
    writer.close()


class _Tensor:
    """One merged weight, read as fp32 numpy only when written (one at a time: no second copy of the model)."""

    def __init__(self, tensor, transform=None):
        self.tensor, self.transform, self.shape = tensor, transform, tuple(tensor.shape)

    def __call__(self):
        data = self.tensor.detach().float().cpu().numpy()
        return self.transform(data) if self.transform else data


def _tensors(merged, arch: str):
    """(GGUF name, _Tensor) for every weight, named by the gguf package's table for `arch`. The output head is
    skipped when tied to the embedding (runtimes then use token_embd). llama.cpp's llama architecture rotates
    q/k pairs interleaved where Hugging Face splits halves: those rows are permuted, as its converter does."""
    import gguf

    config = merged.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[ARCHS[config.model_type]], config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for key, value in merged.state_dict().items():
        if key == "lm_head.weight" and tied:
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise InputError(f"the merged model's tensor {key} has no name in the gguf package's {arch} table",
                             hint="use `genaptitude-trainer merge`, then llama.cpp's convert_hf_to_gguf.py")
        transform = None
        if arch == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
            n = heads if key.endswith("q_proj.weight") else kv_heads
            transform = lambda w, n=n: _permute(w, n)  # noqa: E731
        yield name, _Tensor(value, transform)


def _permute(weights, n_head: int):
    """Hugging Face's half-split RoPE rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's LlamaModel.permute)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _hyper_parameters(writer, config, qtype: str) -> None:
    import gguf

    writer.add_type("model")
    writer.add_name(str(getattr(config, "_name_or_path", "") or config.model_type).rstrip("/").split("/")[-1])
    writer.add_file_type(getattr(gguf.LlamaFileType, "MOSTLY_" + TYPES[qtype]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(config.vocab_size)


def _rope_theta(config) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    return float(theta or getattr(config, "rope_theta", None) or 10000.0)


# -- the tokenizer -------------------------------------------------------------------------------------------
def tokenizer_pre(tokenizer: dict) -> str:
    """llama.cpp's name (tokenizer.ggml.pre) for the way a byte-level BPE tokenizer.json splits text before its
    merges; a tokenizer of another kind, or a split llama.cpp does not know, is refused."""
    model = tokenizer.get("model") or {}
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if model.get("type") != "BPE" or "ByteLevel" not in kinds:
        raise InputError("the base's tokenizer is not a byte-level BPE (GPT-2 style) one: this GGUF writer writes "
                         "those only", hint="use `genaptitude-trainer merge`, then llama.cpp's convert_hf_to_gguf.py")
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"  # llama.cpp spells GPT-2's split so
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        found = {QWEN2_SPLIT: "qwen2", LLAMA3_SPLIT: "llama-bpe"}.get(regex)
        if found:
            return found
    raise InputError(f"the base's tokenizer splits text in a way this GGUF writer does not know ({kinds})",
                     hint="use `genaptitude-trainer merge`, then llama.cpp's convert_hf_to_gguf.py")


def _tokenizer(writer, tok, tokenizer_json: Path, vocab_size: int) -> None:
    """Tokens in id order (ids the tokenizer lacks up to the embedding's size as unused [PAD<id>]), their types
    (added special tokens CONTROL, other added tokens USER_DEFINED), the merges, the special ids, whether a BOS
    is added, and the chat template: what llama.cpp's converter writes for a byte-level BPE tokenizer."""
    import gguf

    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tokenizer_pre(data))
    by_id = {i: t for t, i in tok.get_vocab().items()}
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    size = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = data["model"].get("merges") or []
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    if tok.bos_token_id is not None:
        writer.add_bos_token_id(tok.bos_token_id)
    if tok.eos_token_id is not None:
        writer.add_eos_token_id(tok.eos_token_id)
    if tok.pad_token_id is not None:
        writer.add_pad_token_id(tok.pad_token_id)
    if tok.unk_token_id is not None:
        writer.add_unk_token_id(tok.unk_token_id)
    from core.data.spans import stop_token_ids

    stops = stop_token_ids(tok)
    if stops and stops[-1] != tok.eos_token_id:  # the chat template's end of turn, when it is not EOS
        writer.add_eot_token_id(stops[-1])
    probe = tok("a", add_special_tokens=True)["input_ids"]
    writer.add_add_bos_token(bool(probe) and tok.bos_token_id is not None and probe[0] == tok.bos_token_id)
    if isinstance(getattr(tok, "chat_template", None), str):
        writer.add_chat_template(tok.chat_template)
