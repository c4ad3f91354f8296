"""`export --gguf`: the merged model as one GGUF file that runtimes nobody here wrote load and answer with as ours does.

transformers' own GGUF loader reads the file back (a tiny random Qwen2 with a non-zero adapter and non-zero q/k/v
biases in f16: same greedy tokens, logits within fp16 rounding; the bundled SmolLM2 in q8_0: next-token logits that
follow the merged model's, the same token wherever it is sure, most greedy answers alike);
the metadata keys and tensor names candle's quantized_qwen2 (RAISE) reads are there with their shapes; llama.cpp
(llama-cpp-python, when installed) answers as the merged model does; bad input is one sentence and exit 2 with
nothing left behind; --raise-env puts both files in RAISE's models folder.
"""
from __future__ import annotations

import errno
import json
import shutil

import pytest

from core.cli import main

PROMPTS_ROWS = 12  # rows of the bundled export prompted in the SmolLM2 checks (20 until the suite had to fit 10 min)
NEW_TOKENS = 12


def _lora(base_dir, out, *, std: float, seed: int = 1):
    """A LoRA adapter on every projection of `base_dir` with random, non-zero B (an untrained LoRA's B is zero,
    and merging it would prove nothing), saved as a run saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    torch.manual_seed(seed)  # A's random init too: the same adapter every run
    tuned = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    for name, weight in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=std)
    tuned.save_pretrained(str(out))
    return out


def _merged(base_dir, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().eval()


def _from_gguf(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory, tiny_tokenizer):
    """A tiny random Qwen2 whose q/k/v biases are not zero (so a lost bias shows), and an adapter on it."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.tinymodels import build_tiny_model

    root = tmp_path_factory.mktemp("gguf-qwen")
    base = build_tiny_model(root / "base", tiny_tokenizer, arch="qwen2")
    model = AutoModelForCausalLM.from_pretrained(str(base))
    torch.manual_seed(3)
    for name, p in model.named_parameters():
        if name.endswith("_proj.bias"):
            torch.nn.init.normal_(p, std=0.2)
    model.save_pretrained(str(base))
    return base, _lora(base, root / "adapter", std=0.05)


@pytest.fixture(scope="module")
def qwen_q8(qwen, tmp_path_factory):
    from core.adapter.gguf_export import write_gguf

    return write_gguf(qwen[1], tmp_path_factory.mktemp("q8") / "tiny.gguf", qtype="q8_0")


# -- transformers reads it back ---------------------------------------------------------------------------
@pytest.mark.slow
def test_f16_file_loads_in_transformers_and_answers_as_the_merged_model(qwen, tiny_tokenizer, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    base_dir, adapter = qwen
    out = tmp_path / "tiny.gguf"
    assert main(["export", "--adapter", str(adapter), "--gguf", "f16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[merging]" in printed and "[gguf 1/26] token_embd.weight F16 64x" in printed
    assert "[gguf 26/26] output_norm.weight F32 64" in printed
    assert f"wrote {out} (" in printed and "f16, qwen2) and tiny.tokenizer.json" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf", "tiny.tokenizer.json"]

    merged, loaded = _merged(base_dir, adapter), _from_gguf(out)
    plain = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    ids = tiny_tokenizer.apply_chat_template([{"role": "user", "content": "Which Arcadia layer holds logical "
                                               "components?"}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    with torch.no_grad():
        want, got, before = merged(input_ids=ids).logits, loaded(input_ids=ids).logits, plain(input_ids=ids).logits
    effect, error = (want - before).abs().max().item(), (got - want).abs().max().item()
    assert effect > 0.05, f"the adapter barely changes the logits ({effect:.4f}): the check would prove nothing"
    assert error < 2e-3, f"the GGUF's logits differ from the merged model's by {error:.5f} (fp16 rounding: < 2e-3)"
    greedy = dict(max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    assert loaded.generate(ids, **greedy).tolist() == merged.generate(ids, **greedy).tolist()


@pytest.mark.slow
def test_the_keys_and_tensors_candle_reads_are_there_with_their_shapes(qwen, qwen_q8, tiny_tokenizer):
    """What candle's quantized_qwen2 (RAISE's loader) reads; 1-D tensors F32, token_embd (the tied head) F16."""
    from gguf import GGUFReader

    from core.models import tokenizer_from

    reader = GGUFReader(qwen_q8.gguf)
    value = {name: field.contents() for name, field in reader.fields.items()}
    assert value["general.architecture"] == "qwen2"
    assert {k: value[f"qwen2.{k}"] for k in ("attention.head_count", "attention.head_count_kv", "embedding_length",
                                             "context_length", "block_count")} == {
        "attention.head_count": 4, "attention.head_count_kv": 2, "embedding_length": 64, "context_length": 2048,
        "block_count": 2}
    assert value["qwen2.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert value["qwen2.rope.freq_base"] == pytest.approx(10000.0)

    tensors = {t.name: t for t in reader.tensors}
    hidden, kv, ffn, vocab = 64, 32, 128, len(tiny_tokenizer)
    want = {"token_embd.weight": (hidden, vocab), "output_norm.weight": (hidden,)}
    for i in range(2):
        want |= {f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_q.bias": (hidden,),
                 f"blk.{i}.attn_k.weight": (hidden, kv), f"blk.{i}.attn_k.bias": (kv,),
                 f"blk.{i}.attn_v.weight": (hidden, kv), f"blk.{i}.attn_v.bias": (kv,),
                 f"blk.{i}.attn_output.weight": (hidden, hidden), f"blk.{i}.ffn_gate.weight": (hidden, ffn),
                 f"blk.{i}.ffn_up.weight": (hidden, ffn), f"blk.{i}.ffn_down.weight": (ffn, hidden),
                 f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,)}
    assert {n: tuple(int(d) for d in t.shape) for n, t in tensors.items()} == want  # tied: no `output`
    kinds = {n: t.tensor_type.name for n, t in tensors.items()}
    assert {kinds[n] for n in want if len(want[n]) == 1} == {"F32"}
    assert kinds["token_embd.weight"] == "F16"
    assert {kinds[n] for n in want if len(want[n]) == 2 and n != "token_embd.weight"} == {"Q8_0"}

    # the tokenizer as metadata (the base's: a Qwen2 tokenizer splits text as Qwen2 does), and the tokenizer.json
    # beside the file (RAISE's rust_tokenizer_file), which tokenizes as the tokenizer the adapter was trained with
    tok = tokenizer_from(qwen[0])
    assert value["tokenizer.ggml.model"] == "gpt2" and value["tokenizer.ggml.pre"] == "qwen2"
    assert len(value["tokenizer.ggml.tokens"]) == vocab and len(value["tokenizer.ggml.merges"]) > 100
    assert value["tokenizer.ggml.eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    assert value["tokenizer.ggml.padding_token_id"] == tok.pad_token_id != tok.eos_token_id
    assert value["tokenizer.chat_template"] == tok.chat_template
    from tokenizers import Tokenizer

    text = "<|im_start|>user\nWhich layer holds LogicalComponent 42?<|im_end|>\n"
    assert Tokenizer.from_file(str(qwen_q8.tokenizer)).encode(text).ids == tok(text)["input_ids"]


# -- the bundled SmolLM2 (a llama), q8_0: transformers, then llama.cpp ---------------------------------------
@pytest.fixture(scope="module")
def smollm2_q8(smollm2, tmp_path_factory):
    """An adapter on the bundled SmolLM2 exported q8_0, the merged model's greedy answers to held-out prompts
    (rows of the bundled export), and those prompts as token ids."""
    from core.adapter.gguf_export import write_gguf
    from core.models import resolve
    from core.presets import BUNDLED_MODEL
    from tests.tinymodels import BUNDLED_DATASET

    root = tmp_path_factory.mktemp("gguf-smollm2")
    base = resolve(BUNDLED_MODEL)
    adapter = _lora(base, root / "adapter", std=0.01)
    (adapter / "run.json").write_text(json.dumps({"config": {"model": BUNDLED_MODEL}}))
    written = write_gguf(adapter, root / "smollm2.gguf", qtype="q8_0")
    rows = [json.loads(line) for line in BUNDLED_DATASET.read_text(encoding="utf-8").splitlines()[-PROMPTS_ROWS:]]
    prompts = [smollm2.apply_chat_template([{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"}],
                                           add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
               for r in rows]
    merged = _merged(base, adapter)
    return written, prompts, _greedy(merged, prompts, smollm2), merged


def _greedy(model, prompts: list[list[int]], tok, batch: int = 10) -> list[str]:
    """Greedy answers, a batch of left-padded prompts at a time (what `evaluate` does)."""
    import torch

    answers = []
    for i in range(0, len(prompts), batch):
        enc = tok.pad({"input_ids": prompts[i:i + batch]}, padding_side="left", return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        answers += [tok.decode(row, skip_special_tokens=True).strip() for row in out[:, enc["input_ids"].shape[1]:]]
    return answers


def _agree(got: list[str], want: list[str]) -> float:
    return sum(g == w for g, w in zip(got, want)) / len(want)


def _next_tokens_follow(merged, prompts, logits_of, *, corr: float, sure: float) -> None:
    """At the end of each prompt, the file's next-token logits (`logits_of(ids)`) follow the merged model's
    (correlation above `corr`) and pick its token wherever it is sure (its top two `sure` logits apart)."""
    import numpy as np
    import torch

    decided = 0
    for ids in prompts:
        with torch.no_grad():
            ours = merged(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
        theirs = np.asarray(logits_of(ids), dtype=np.float64)
        assert np.corrcoef(ours, theirs)[0, 1] > corr
        top2 = np.sort(ours)[-2:]
        if top2[1] - top2[0] > sure:
            decided += 1
            assert int(theirs.argmax()) == int(ours.argmax())
    assert decided >= 3, "too few sure next tokens for the check to mean anything"


@pytest.mark.slow
def test_bundled_smollm2_in_q8_0_answers_as_the_merged_model_in_transformers(smollm2_q8, smollm2):
    import torch
    from gguf import GGUFReader

    written, prompts, answers, merged = smollm2_q8
    assert written.arch == "llama"
    reader = GGUFReader(written.gguf)
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"  # the tokenizer the adapter was trained with
    loaded = _from_gguf(written.gguf)

    def logits_of(ids):
        with torch.no_grad():
            return loaded(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()

    _next_tokens_follow(merged, prompts, logits_of, corr=0.999, sure=0.5)
    # Whole greedy answers of this random adapter (near-ties all along: it was never trained) part after a few
    # tokens on some prompts: 14 to 20 of 20 alike over runs here (on 20 prompts). A file with a wrong tensor answers
    # none alike.
    got = _greedy(loaded, prompts, smollm2)
    assert len(set(answers)) > 1, answers  # answers that differ: agreeing on them means something
    assert _agree(got, answers) >= 0.6, [(g, w) for g, w in zip(got, answers) if g != w]


@pytest.mark.slow
def test_llama_cpp_loads_the_q8_0_file_and_answers_as_the_merged_model(smollm2_q8):
    """llama.cpp as an independent reader (its own tokenizer tables, its own kernels), when llama-cpp-python is
    installed (the README says how: its own venv, GGML_NATIVE=OFF on an AMX CPU). Its next-token logits follow the
    merged model's and it picks the same token wherever the merged model is sure; whole greedy answers of this
    random adapter part where two tokens are nearly tied (llama.cpp also rounds activations to 8 bits): 15 to 17
    of 20 alike in runs here, held to 60%."""
    llama_cpp = pytest.importorskip("llama_cpp")
    written, prompts, answers, merged = smollm2_q8
    llm = llama_cpp.Llama(model_path=str(written.gguf), n_ctx=1024, n_threads=2, logits_all=True, verbose=False)

    def logits_of(ids):
        llm.reset()
        llm.eval(ids)
        return llm.scores[llm.n_tokens - 1]

    _next_tokens_follow(merged, prompts, logits_of, corr=0.99, sure=0.5)
    got = [llm.create_completion(prompt=ids, max_tokens=NEW_TOKENS, temperature=0.0, top_k=1)["choices"][0]["text"]
           .strip() for ids in prompts]
    assert _agree(got, answers) >= 0.6, [(g, w) for g, w in zip(got, answers) if g != w]


# -- bad input: one sentence, exit 2, nothing written ------------------------------------------------------
def _refused(capsys, args, *words) -> str:
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: "), err
    for word in words:
        assert word in err, err
    return err


def _adapter_on(adapter, tmp_path, base: str):
    """A copy of `adapter` that names another base."""
    copy = tmp_path / "other-adapter"
    shutil.copytree(adapter, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base}))
    return copy


def test_a_folder_that_is_not_an_adapter_is_refused(tmp_path, capsys):
    _refused(capsys, ["--adapter", str(tmp_path), "--gguf", "--out", str(tmp_path / "m.gguf")],
             "is not an adapter folder")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_bases_env_files_and_targets_are_refused_with_nothing_left(qwen, tmp_path, capsys, monkeypatch):
    base, adapter = qwen
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _refused(capsys, ["--adapter", str(_adapter_on(adapter, tmp_path, "nobody/not-cached-model")), "--gguf",
                      "--out", str(out)], "not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    shutil.rmtree(tmp_path / "other-adapter")

    phi = tmp_path / "phi-base"
    shutil.copytree(base, phi)
    (phi / "config.json").write_text(json.dumps({**json.loads((phi / "config.json").read_text()),
                                                 "model_type": "phi3"}))
    _refused(capsys, ["--adapter", str(_adapter_on(adapter, tmp_path, str(phi))), "--gguf", "--out", str(out)],
             "is a phi3", "maps qwen2 and llama models only")
    assert list(out.parent.iterdir()) == []

    env = tmp_path / "raise" / ".env"
    env.parent.mkdir()
    env.write_text("# RAISE\nRUST_LOG=info\n")
    _refused(capsys, ["--adapter", str(adapter), "--gguf", "--out", str(out), "--raise-env", str(env)],
             f"{env} sets neither PATH_RAISE_ASSET nor PATH_RAISE_DOMAIN")
    _refused(capsys, ["--adapter", str(adapter), "--raise-env", str(env)], "--raise-env installs a GGUF file")
    _refused(capsys, ["--adapter", str(adapter), "--gguf", "--out", str(tmp_path / "m.bin")], "does not end in .gguf")
    assert list(out.parent.iterdir()) == [] and sorted(p.name for p in env.parent.iterdir()) == [".env"]

    # a disk that fills while the tensors are written: the system's reason, no .partial, no tokenizer.json
    import gguf

    written = []

    def full_disk(self, tensor, *args, **kwargs):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(tensor)

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", full_disk)
    _refused(capsys, ["--adapter", str(adapter), "--gguf", "--out", str(out)],
             f"could not write {out}: No space left on device")
    assert list(out.parent.iterdir()) == []


# -- RAISE -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_raise_env_puts_both_files_in_its_models_folder_and_says_the_two_settings(qwen, tmp_path, capsys,
                                                                                 monkeypatch):
    _, adapter = qwen
    raise_dir = tmp_path / "raise"
    raise_dir.mkdir()
    env = raise_dir / ".env"
    env.write_text('# RAISE\nexport PATH_RAISE_DOMAIN="/elsewhere"\nPATH_RAISE_ASSET=assets  # beside the .env\n')
    out = tmp_path / "build" / "genaptitude.gguf"
    out.parent.mkdir()
    args = ["export", "--adapter", str(adapter), "--gguf", "--out", str(out), "--raise-env", str(env)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    models = raise_dir / "assets" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["genaptitude.gguf", "genaptitude.tokenizer.json"]
    assert (models / "genaptitude.gguf").read_bytes() == out.read_bytes()
    assert f"copied both into {models}" in printed
    assert ("set in RAISE's ai_llm component: rust_model_file = genaptitude.gguf, "
            "rust_tokenizer_file = genaptitude.tokenizer.json") in printed

    # a file of that name in RAISE's folder is never replaced silently (checked before the merge)
    (models / "genaptitude.gguf").write_bytes(b"someone else's model")
    for path in out.parent.iterdir():
        path.unlink()
    _refused(capsys, args[1:], f"{models / 'genaptitude.gguf'} already exists",
             "pass --overwrite to replace it")
    assert (models / "genaptitude.gguf").read_bytes() == b"someone else's model" and not out.exists()
    assert main([*args, "--overwrite"]) == 0
    assert (models / "genaptitude.gguf").read_bytes() == out.read_bytes()
    capsys.readouterr()

    # without PATH_RAISE_ASSET: the domain's _system/ai-assets; a read-only folder leaves nothing half-copied
    env.write_text(f"PATH_RAISE_DOMAIN={tmp_path / 'domain'}\n")
    domain_models = tmp_path / "domain" / "_system" / "ai-assets" / "models"
    copyfile = shutil.copyfile

    def read_only(src, dst, *a, **k):
        if str(dst).startswith(str(domain_models)):
            raise OSError(errno.EROFS, "Read-only file system")
        return copyfile(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", read_only)
    _refused(capsys, [*args[1:], "--overwrite"], f"could not copy into {domain_models}: Read-only file system")
    assert list(domain_models.iterdir()) == []


@pytest.mark.slow
def test_raise_env_refuses_a_base_raise_cannot_load(tiny_model_dir, tmp_path, capsys):
    adapter = _lora(tiny_model_dir, tmp_path / "llama-adapter", std=0.05)
    env = tmp_path / ".env"
    env.write_text(f"PATH_RAISE_ASSET={tmp_path / 'assets'}\n")
    _refused(capsys, ["--adapter", str(adapter), "--gguf", "--out", str(tmp_path / "m.gguf"), "--raise-env",
                      str(env)], "RAISE loads Qwen2 GGUF files only", "is a llama model",
             "the GGUF still works in llama.cpp and Ollama")
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "assets").exists()
