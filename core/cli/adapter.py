"""The commands on a trained adapter: `evaluate` (held-out answers and scores), `export` (zip, install, or a GGUF
for RAISE / llama.cpp), `report` (a run's curves as a PNG), `merge` (base model with the adapter merged in)."""
from __future__ import annotations

import json

from core.cli.gpu_choice import say_stderr, use_gpus
from core.errors import InputError


def cmd_evaluate(args) -> int:
    use_gpus(1, args.gpu_ids, say=say_stderr)
    from core.adapter.evaluate import evaluate, held_out

    rows = held_out(args.dataset, args.adapter, model=args.model, split=args.split, limit=args.limit)
    model, examples = rows.model, rows.examples
    results = evaluate(model, args.adapter, examples, compare=args.compare, max_new_tokens=args.max_new_tokens)
    if args.json:
        out = {"model": model, "adapter": args.adapter, "rows": len(examples),
               "results": [r.to_dict() for r in results]}
        main_result = results[-1]
        out.update(exact_match=main_result.exact_match, similarity=main_result.similarity,
                   eval_loss=main_result.eval_loss)
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    from core.adapter.evaluate_view import render_results

    print(render_results(results))
    return 0


def cmd_export(args) -> int:
    from core.adapter.export import export_zip, install

    if args.raise_env and not args.gguf:
        raise InputError("--raise-env installs a GGUF file", hint="add --gguf (q8_0 by default)")
    if not args.zip_path and not args.install and not args.gguf:
        raise InputError("nothing to do", hint="give --zip FILE, --install [--env-file PATH] and/or --gguf [TYPE]")
    if args.gguf:
        use_gpus(1)  # the merge works on the CPU; pinned anyway, as for merge
        from core.adapter.gguf_export import write_gguf

        written = write_gguf(args.adapter, args.out, qtype=args.gguf, model=args.model, overwrite=args.overwrite,
                             trust_remote_code=args.trust_remote_code, raise_env=args.raise_env,
                             emit=_print_export_event)
        print("\n".join(written.lines()))
    if args.zip_path:
        print(f"wrote {export_zip(args.adapter, args.zip_path)}")
    if args.install:
        dest, backup = install(args.adapter, args.lora_root, args.env_file)
        print(f"installed {dest}")
        if args.env_file:
            print(f"{args.env_file}: RAISE_LORA_PATH={dest}" + (f" (backup: {backup})" if backup else ""))
        else:
            print(f"set in GenAptitude's .env: RAISE_LORA_PATH={dest}")
    return 0


def _print_export_event(event) -> None:
    from core.events import LogLine, Phase, TensorWritten

    if isinstance(event, TensorWritten):
        shape = "x".join(map(str, event.shape))
        print(f"[gguf {event.done}/{event.total}] {event.tensor} {event.ggml_type} {shape}", flush=True)
    elif isinstance(event, Phase):
        print(f"[{event.name}] {event.detail}", flush=True)
    elif isinstance(event, LogLine):
        print(event.message, flush=True)


def cmd_report(args) -> int:
    from core.runs.report import summary, write_report

    path, curves = write_report(args.run_dir, args.out)
    print(summary(curves))
    print(f"wrote {path}")
    return 0


def cmd_merge(args) -> int:
    use_gpus(1)  # merge works on the CPU; pinned anyway, so no library spreads onto a GPU another user holds
    from core.adapter.merge import gguf_instructions, merge

    path = merge(args.adapter, args.out, model=args.model, overwrite=args.overwrite,
                 trust_remote_code=args.trust_remote_code, say=lambda line: print(line, flush=True))
    print(f"wrote {path} (bf16 safetensors + tokenizer; loads with AutoModelForCausalLM, no peft needed)")
    print(gguf_instructions(path))
    return 0
