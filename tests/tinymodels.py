"""Tiny real models and tokenizers built locally (nothing downloads): for tests and offline GPU runs."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DATASET = ROOT / "dataset.jsonl"

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(texts: list[str], vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on `texts`, with ChatML specials and pad != eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, unk_token=None)
    tok.chat_template = CHATML
    return tok


def dataset_texts(path: Path = BUNDLED_DATASET) -> list[str]:
    rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    return [r.get("instruction", "") + "\n" + r.get("input", "") + "\n" + r.get("output", "") for r in rows]


def build_tiny_model(folder: Path, tok, arch: str = "llama") -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    model = (Qwen2ForCausalLM(Qwen2Config(**common)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**common)))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def train_tiny(model_dir, dataset, out, *, stop_at: int | None = None, resume: bool = False, **overrides):
    """The real engine on the cpu preset with a tiny model (4 steps of 4 rows unless overridden): (path, events).
    `stop_at` sets the stop event once that step is logged, as Ctrl-C or the TUI's `s` would."""
    import threading

    from core import events as ev
    from core.presets import config_for
    from core.train.engine import train

    got: list = []
    stop = threading.Event()

    def on_event(e):
        got.append(e)
        if stop_at is not None and isinstance(e, ev.StepLogged) and e.step >= stop_at:
            stop.set()

    # fp32 on any CPU (cpu_bf16 off): the tests compare losses and weights across runs to float rounding
    cfg = config_for("cpu", model=str(model_dir), **{"max_steps": 4, "batch_size": 4, "cpu_bf16": False, **overrides})
    path = train(cfg, str(dataset), str(out), on_event=on_event, stop_event=stop, resume=resume)
    return path, got
