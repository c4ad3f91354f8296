"""The exported GGUF in llama.cpp against the adapter in transformers, on the run's held-out rows (issue 28).

    python3 -m venv .venv-llama && CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv-llama/bin/pip install llama-cpp-python
    mkdir -p /tmp/llamapath && ln -sf $PWD/.venv-llama/lib/python3.*/site-packages/{llama_cpp,diskcache} /tmp/llamapath/
    PYTHONPATH=/tmp/llamapath .venv/bin/python benchmarks/gguf_llama_cpp.py --adapter RUN --dataset dataset.jsonl

(GGML_NATIVE=OFF: the native build segfaults on an AMX CPU; the symlinks give this venv llama_cpp alone, not the
other venv's numpy.) Exports --gguf TYPE of the adapter unless --file names one, answers the held-out rows greedily
with the adapter (transformers, as `evaluate` does) and with the file (llama.cpp, the same prompt token ids), and
prints both exact-match rates, how many answers are the same, and the rows that differ. --transformers also answers
with the file read back by transformers' own GGUF loader (dequantized to fp32) against the merged model, the check
tests/test_gguf.py makes on a small scale. Without llama_cpp importable, only that comparison runs.
"""
from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--adapter", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--file", default=None, help="a GGUF already exported (default: export one now)")
    p.add_argument("--qtype", default="q8_0")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--transformers", action="store_true", help="also the file through transformers' GGUF loader")
    args = p.parse_args()

    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None

    from core.adapter.evaluate import Fitting, generate_replies, held_out, load_for_eval, prompt_of, score
    from core.adapter.gguf_export import write_gguf

    started = time.monotonic()
    path = args.file or str(write_gguf(args.adapter, qtype=args.qtype, overwrite=True).gguf)
    exported = time.monotonic() - started
    rows = held_out(args.dataset, args.adapter)
    tok, _, tuned = load_for_eval(rows.model, args.adapter)
    fitting = Fitting.of(args.adapter)
    examples = fitting.lay_out(tok, rows.examples)
    conversations = [prompt_of(tok, e, fitting) for e in examples]
    ours = generate_replies(tok, tuned, conversations, args.max_new_tokens)

    report = {"rows": len(examples), "split": rows.split, "file": path, "export_s": round(exported, 1),
              "adapter_exact_match": score("adapter", examples, ours, None).exact_match}
    if llama_cpp is not None:
        llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=2, verbose=False)
        theirs = []
        for c in conversations:
            ids = tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False)["input_ids"]
            out = llm.create_completion(prompt=ids, max_tokens=args.max_new_tokens, temperature=0.0, top_k=1)
            theirs.append(out["choices"][0]["text"].strip())
        report.update(_against("gguf_llama_cpp", examples, ours, theirs))
    if args.transformers:
        from pathlib import Path

        from transformers import AutoModelForCausalLM

        from core.adapter.merge import merged_model

        import torch

        merged = merged_model(Path(args.adapter), dtype=torch.float32)[0]  # what the export merges and writes
        file = Path(path)
        loaded = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name).eval()
        read_back = generate_replies(tok, loaded, conversations, args.max_new_tokens)
        report.update(_against("gguf_transformers", examples, ours, read_back))
        report.update(_against("merged_vs_gguf_transformers", examples,
                               generate_replies(tok, merged.eval(), conversations, args.max_new_tokens), read_back))
    print(json.dumps(report, ensure_ascii=False, indent=2))


def _against(name: str, examples, ours: list[str], theirs: list[str]) -> dict:
    from core.adapter.evaluate import score

    return {f"{name}_exact_match": score(name, examples, theirs, None).exact_match,
            f"{name}_same_answers": sum(a == b for a, b in zip(ours, theirs)),
            f"{name}_differ": [{"line": e.line, "reference": a, "gguf": b}
                               for e, a, b in zip(examples, ours, theirs) if a != b]}


if __name__ == "__main__":
    main()
