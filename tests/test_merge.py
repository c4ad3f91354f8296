"""`merge`: a real tiny adapter folded into its base, loadable without peft, same logits, bf16 on disk."""
from __future__ import annotations

import json

import pytest

from core.adapter.merge import gguf_instructions
from core.cli import main
from tests.test_engine import run

PROMPT = "<|im_start|>user\nWhich Arcadia layer holds logical components?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("merge") / "adapter"
    run(tiny_model_dir, small_dataset, out, max_steps=6, lr=5e-3)  # big enough a change to tell apart from bf16 noise
    return out


@pytest.fixture()
def no_converter(tmp_path, monkeypatch):
    """No llama.cpp anywhere merge looks: PATH, $LLAMA_CPP_DIR, ~/llama.cpp, ./llama.cpp."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_merged_folder_loads_without_peft_and_matches_base_plus_adapter(adapter, tiny_model_dir, tmp_path,
                                                                         no_converter, capsys):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    (tmp_path / "merged.partial").mkdir()  # left by a merge that died half-way
    (tmp_path / "merged.partial" / "junk").write_text("x")
    assert main(["merge", "--adapter", str(adapter), "--out", str(out)]) == 0  # base from the adapter's run.json
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "GGUF: no converter is installed here" in printed and "convert_hf_to_gguf.py" in printed

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not names & {"adapter_config.json", "adapter_model.safetensors", "junk"}
    assert not (tmp_path / "merged.partial").exists()
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert not any("lora" in k for k in f.keys())
    assert dtypes == {"BF16"}

    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[0]) == PROMPT and tok.chat_template
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert merged.dtype == torch.bfloat16 and not hasattr(merged, "peft_config")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter)).eval()(input_ids=ids).logits
        got = merged.float()(input_ids=ids).logits
    effect = (tuned - plain).abs().max().item()
    error = (got - tuned).abs().max().item()
    assert effect > 0.05, f"the adapter barely changes the logits ({effect:.4f}): the comparison would prove nothing"
    assert error < 0.02 and error < effect / 5, f"merged differs from base+adapter by {error:.4f} (effect {effect:.4f})"


@pytest.mark.slow
def test_merge_refuses_what_it_must_not_touch(adapter, tmp_path, no_converter, capsys):
    assert main(["merge", "--adapter", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "is not an adapter folder" in capsys.readouterr().err and not (tmp_path / "m").exists()

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["merge", "--adapter", str(adapter), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "never overwritten silently" in err and "--overwrite" in err and "Traceback" not in err
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]

    assert main(["merge", "--adapter", str(adapter), "--out", str(adapter / "merged")]) == 2
    assert "overlaps the adapter folder" in capsys.readouterr().err
    assert main(["merge", "--adapter", str(adapter), "--out", str(adapter)]) == 2
    assert (adapter / "adapter_model.safetensors").is_file()

    assert main(["merge", "--adapter", str(adapter), "--out", str(tmp_path / "m"), "--model", str(tmp_path)]) == 2
    assert "is not a model folder" in capsys.readouterr().err

    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other-base"  # a base of another size: the adapter's shapes do not fit
    LlamaForCausalLM(LlamaConfig(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(str(other))
    assert main(["merge", "--adapter", str(adapter), "--out", str(tmp_path / "m"), "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "does not fit base model" in err and "--model" in err and not (tmp_path / "m").exists()

    assert main(["merge", "--adapter", str(adapter), "--out", str(taken), "--overwrite"]) == 0
    assert (taken / "model.safetensors").is_file() and not (taken / "notes.txt").exists()
    assert not list(tmp_path.glob("taken.*"))  # no .partial or .old-* left behind


def test_gguf_says_what_to_run_when_llama_cpp_is_there(tmp_path, no_converter, monkeypatch):
    merged = tmp_path / "merged"
    text = gguf_instructions(merged)
    assert text.startswith("GGUF: no converter is installed here")
    assert "requirements-convert_hf_to_gguf.txt" in text and f"--outfile {tmp_path / 'merged.gguf'}" in text

    llama = tmp_path / "llama.cpp-checkout"
    llama.mkdir()
    (llama / "convert_hf_to_gguf.py").write_text("# llama.cpp's converter\n")
    monkeypatch.setenv("LLAMA_CPP_DIR", str(llama))
    text = gguf_instructions(merged)
    assert f"python {llama / 'convert_hf_to_gguf.py'} {merged} --outtype bf16 --outfile {merged}.gguf" in text

    monkeypatch.delenv("LLAMA_CPP_DIR")
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    script = bin_dir / "convert_hf_to_gguf.py"
    script.write_text("#!/usr/bin/env python3\n")
    script.chmod(0o755)
    assert f"python {script} {merged}" in gguf_instructions(merged)


@pytest.mark.slow
def test_merged_model_stops_at_the_end_of_turn_when_its_eos_is_another_token(adapter, tmp_path, no_converter):
    """A base tokenizer (or a GGUF conversion) may call another token EOS than the one the chat template ends a turn
    with; the merged folder's generation_config stops at both, as evaluate and chat do."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    odd = tmp_path / "adapter"
    shutil.copytree(adapter, odd)
    cfg = json.loads((odd / "tokenizer_config.json").read_text())
    (odd / "tokenizer_config.json").write_text(json.dumps({**cfg, "eos_token": "<|im_start|>"}))  # as a GGUF conversion had it
    assert main(["merge", "--adapter", str(odd), "--out", str(tmp_path / "merged")]) == 0
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    assert tok.eos_token == "<|im_start|>"
    stops = GenerationConfig.from_pretrained(str(tmp_path / "merged")).eos_token_id
    assert stops == [tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")]
