"""`genaptitude-trainer`: the headless CLI (Colab, scripts, CI). Same engine as the TUI.

Exit codes: 0 success, 1 the run failed, 2 bad input or settings (nothing written), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .errors import InputError, TrainerError
from .presets import PRESETS

DEFAULT_OUTPUT = "genaptitude-qwen-adapter"


def _gpus(text: str) -> int:
    """`--gpus 2` or `--gpus all` (every GPU NVML sees)."""
    if text.strip().lower() == "all":
        from .hardware import probe

        return max(len(probe().gpus), 1)
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GPUs (give e.g. 2, or all)") from None
    if n < 1:
        raise argparse.ArgumentTypeError("the number of GPUs must be at least 1")
    return n


def _add_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides (each replaces the preset's value)")
    g.add_argument("--epochs", type=float)
    g.add_argument("--max-steps", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--batch-tokens", type=int, help="micro-batches of length-sorted rows up to N padded tokens "
                                                     "(0: a fixed --batch-size rows)")
    g.add_argument("--grad-accum", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--lr-scheduler")
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--max-length", type=int)
    g.add_argument("--truncation", choices=["keep-answer", "right", "drop"],
                   help="rows over --max-length: keep-answer (default) cuts the input in its middle and keeps the "
                        "answer whole; right cuts the end (the answer goes first); drop leaves them out")
    g.add_argument("--lora-r", type=int)
    g.add_argument("--lora-alpha", type=int)
    g.add_argument("--lora-dropout", type=float)
    g.add_argument("--lora-targets", help="comma-separated module names, e.g. q_proj,v_proj")
    g.add_argument("--save-every", type=int, help="steps between resumable checkpoints (0: at the end/stop only)")
    g.add_argument("--eval-fraction", type=float)
    g.add_argument("--eval-every", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--quantization", choices=["nf4", "none"])
    g.add_argument("--optimizer")
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--tensorboard", action="store_true", default=None)
    g.add_argument("--gpu-memory-fraction", type=float, help="cap this process's share of GPU memory (0-1)")
    g.add_argument("--gpu-batch", choices=["split", "each"], help="with --gpus: split keeps the effective batch "
                   "(default), each keeps every GPU's micro-batch (effective batch × GPUs, faster per token)")
    g.add_argument("--gpus", type=_gpus, help="data-parallel on N GPUs (or all), one process each; the effective "
                                           "batch stays the preset's")


OVERRIDES = ("epochs", "max_steps", "batch_size", "batch_tokens", "grad_accum", "lr", "lr_scheduler", "warmup_steps", "max_length", "truncation",
             "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "save_every", "eval_fraction", "eval_every",
             "seed", "quantization", "optimizer", "gradient_checkpointing", "tensorboard", "gpu_memory_fraction",
             "gpus", "gpu_batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genaptitude-trainer",
                                     description="Fine-tune a LoRA adapter for GenAptitude on a dataset.jsonl export.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a dataset and show how the model will see it")
    p.add_argument("dataset")
    p.add_argument("--model", default=None, help="tokenizer to count with (default: the bundled model)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--truncation", choices=["keep-answer", "right", "drop"], default="keep-answer",
                   help="how train will handle rows over --max-length (said in the report)")
    p.add_argument("--skip-invalid", action="store_true")
    p.add_argument("--no-tokens", action="store_true", help="skip token statistics (no model needed)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="report GPUs, CUDA, bitsandbytes and the suggested preset")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("presets", help="list presets and the reason for each value")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a LoRA adapter")
    p.add_argument("--dataset", default="dataset.jsonl")
    p.add_argument("--model", default=None, help="Hub id, local folder, .gguf file or smollm2-135m-instruct")
    p.add_argument("--preset", default=None, choices=list(PRESETS), help="default: the one `doctor` suggests")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    p.add_argument("--overwrite", action="store_true", help="replace an existing adapter in --output")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of --output")
    p.add_argument("--skip-invalid", action="store_true", help="train on the valid rows, report the others")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code to run")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.add_argument("--config-json", default=None, help="a whole training configuration as JSON (what the TUI "
                                                      "sends its run process); replaces --preset, overrides apply")
    _add_overrides(p)

    p = sub.add_parser("evaluate", help="greedy answers on held-out rows: exact match, similarity, eval loss")
    p.add_argument("--model", default=None, help="base model (default: the one the adapter was trained on)")
    p.add_argument("--adapter", default=None)
    p.add_argument("--dataset", default="dataset.jsonl")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--split", choices=["eval", "all"], default="eval",
                   help="eval: the rows held out by the adapter's run (same seed/fraction); all: every row")
    p.add_argument("--compare", action="store_true", help="also answer with the base model, side by side")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("export", help="zip the adapter (Colab download) or install it for GenAptitude")
    p.add_argument("--adapter", default=DEFAULT_OUTPUT)
    p.add_argument("--zip", dest="zip_path", default=None, help="write the adapter into this zip file")
    p.add_argument("--install", action="store_true", help="copy into --lora-root and set RAISE_LORA_PATH")
    p.add_argument("--lora-root", default="~/genaptitude-llm/ai-assets/lora")
    p.add_argument("--env-file", default=None, help="GenAptitude's .env to update (backed up first)")

    p = sub.add_parser("report", help="draw a run's loss and memory curves into a PNG")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a train --output folder (finished, stopped or .partial)")
    p.add_argument("--out", default=None, help="PNG file to write (default: RUN_DIR/report.png)")

    p = sub.add_parser("merge", help="save the base model with the adapter merged in (bf16), for other tools")
    p.add_argument("--adapter", default=DEFAULT_OUTPUT)
    p.add_argument("--out", required=True, help="folder for the merged model (written whole or not at all)")
    p.add_argument("--model", default=None, help="base model (default: the one the adapter was trained on)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code to run")

    p = sub.add_parser("bench", help="tokens/s, ms/step, peak VRAM and MFU: presets vs the old script's settings")
    p.add_argument("--presets", default="old-settings,modern-bf16,8gb,t4-fp16,t4-fp32",
                   help="comma-separated; old-settings is the old train.py configuration")
    p.add_argument("--arch", default="qwen2.5-1.5b", help="random weights of this architecture (offline)")
    p.add_argument("--seq-len", default="128-1024", help="uniform row lengths MIN-MAX")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--smoke", action="store_true", help="tiny architecture on CPU (tests the harness)")
    p.add_argument("--out", default=None, help="write the JSON result here")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainerError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False))
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_check(args) -> int:
    from .check import check_dataset, render_check

    result = check_dataset(args.dataset, model=None if args.no_tokens else (args.model or "smollm2-135m-instruct"),
                           max_length=args.max_length, skip_invalid=args.skip_invalid,
                           truncation=args.truncation)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else render_check(result))
    return 0


def cmd_doctor(args) -> int:
    from .hardware import probe
    from .presets import suggest

    report = probe(check_torch=True)
    s = suggest(report)
    if args.json:
        print(json.dumps({**report.to_dict(), "suggested_preset": s.preset, "reason": s.reason,
                          "suggested_gpus": s.gpus}, indent=2))
        return 0
    if report.gpus:
        for g in report.gpus:
            cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "?"
            print(f"GPU {g.index}: {g.name}  {g.used_gib:.1f}/{g.total_gib:.1f} GiB used, {g.free_gib:.1f} GiB free, "
                  f"compute capability {cc}, bf16 {'yes' if g.bf16 else 'no'}")
        print(f"driver {report.driver_version}, CUDA {report.cuda_driver_version}")
    else:
        print(f"no GPU: {report.nvml_error}")
    print(f"torch {report.torch_version}: CUDA {'available' if report.torch_cuda else 'not available'}")
    print(f"bitsandbytes: {report.bnb_message}")
    print(f"suggested preset: {s.preset} ({s.reason})")
    if s.gpus > 1:
        print(f"train on all of them with: genaptitude-trainer train --preset {s.preset} --gpus {s.gpus}")
    return 0


def cmd_presets(args) -> int:
    if args.json:
        print(json.dumps({n: {"summary": p.summary, "config": p.config.to_dict(), "reasons": p.reasons}
                          for n, p in PRESETS.items()}, indent=2, ensure_ascii=False))
        return 0
    for name, p in PRESETS.items():
        print(f"{name}: {p.summary}")
        for field, why in p.reasons.items():
            print(f"    {field} = {getattr(p.config, field)!r}: {why}")
    return 0


def resolve_config(args):
    from .presets import config_for

    if getattr(args, "config_json", None):
        from .presets import config_from_dict

        overrides = {k: v for k in OVERRIDES if (v := getattr(args, k)) is not None}
        if args.model:
            overrides["model"] = args.model
        if args.trust_remote_code:
            overrides["trust_remote_code"] = True
        return config_from_dict({**json.loads(Path(args.config_json).read_text(encoding="utf-8")), **overrides})
    preset = args.preset
    if preset is None:
        from .hardware import probe
        from .presets import suggest

        preset = suggest(probe(check_torch=True)).preset
    overrides = {k: getattr(args, k) for k in OVERRIDES}
    if args.model:
        overrides["model"] = args.model
    if args.trust_remote_code:
        overrides["trust_remote_code"] = True
    return config_for(preset, **overrides)


def cmd_train(args) -> int:
    from .engine import train

    config = resolve_config(args)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving the adapter and a checkpoint "
              "(press again to abort without saving)", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    printer = json_printer if args.json else human_printer
    try:
        train(config, args.dataset, args.output, on_event=printer, stop_event=stop, overwrite=args.overwrite,
              resume=args.resume, skip_invalid=args.skip_invalid)
    except TrainerError as exc:
        if args.json:  # the Failed event already went out as JSON
            print(f"error: {exc.render()}", file=sys.stderr)
            return exc.exit_code
        raise
    return 0


def json_printer(event) -> None:
    print(event.to_json(), flush=True)


_shown_progress: dict[str, tuple[int, int]] = {}  # phase -> (tenth, done) last printed: a line per 10% at most


def human_printer(event) -> None:
    from .presets import batch_label, config_from_dict
    from .events import (
        CheckpointSaved, EvalLogged, Finished, LogLine, OomRecovered, Phase, Progress, RunStarted, StepLogged,
    )

    if isinstance(event, Phase):
        print(f"[{event.name}] {event.detail}", flush=True)
    elif isinstance(event, Progress):
        tenth = event.done * 10 // event.total if event.total > 0 else 10
        last_tenth, last_done = _shown_progress.get(event.phase, (-1, -1))
        if tenth != last_tenth or event.done <= last_done:  # a new tenth of the way, or the phase started over
            _shown_progress[event.phase] = (tenth, event.done)
            pct = 100 * event.done // event.total if event.total > 0 else 100
            print(f"[{event.phase}] {event.done:,}/{event.total:,} rows ({pct}%)", flush=True)
    elif isinstance(event, LogLine):
        print(f"{event.level}: {event.message}", flush=True)
    elif isinstance(event, RunStarted):
        c = event.config
        print(f"run: preset {c['preset']}, model {c['model']}, {event.train_rows} train / {event.eval_rows} eval rows, "
              f"{event.total_steps} steps, batch {batch_label(config_from_dict(c))}", flush=True)
    elif isinstance(event, StepLogged):
        eta = f"{event.eta_s:.0f}s" if event.eta_s is not None else "?"
        print(f"step {event.step}/{event.total_steps}  loss {event.loss:.4f}  lr {event.lr:.2e}  "
              f"{event.tokens_per_s:.0f} tok/s  eta {eta}", flush=True)
    elif isinstance(event, EvalLogged):
        print(f"eval loss {event.eval_loss:.4f} at step {event.step}", flush=True)
    elif isinstance(event, CheckpointSaved):
        print(f"checkpoint saved: {event.path}", flush=True)
    elif isinstance(event, OomRecovered):
        print(f"out of memory at step {event.step}: batch {event.old_batch_size}→{event.new_batch_size}, "
              f"accumulation {event.old_grad_accum}→{event.new_grad_accum} (same effective batch)", flush=True)
    elif isinstance(event, Finished):
        state = "stopped early" if event.stopped_early else "finished"
        print(f"{state} after {event.steps}/{event.total_steps} steps in {event.runtime_s:.0f}s; "
              f"adapter: {event.output_dir}", flush=True)
        if event.checkpoint_dir:
            print(f"resume with: genaptitude-trainer train --resume --output {event.output_dir} ...", flush=True)
        print(f"GenAptitude: set RAISE_LORA_PATH={event.output_dir}", flush=True)


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate, held_out

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
    from .evaluate_view import render_results

    print(render_results(results))
    return 0


def cmd_export(args) -> int:
    from .export import export_zip, install

    if not args.zip_path and not args.install:
        raise InputError("nothing to do", hint="give --zip FILE and/or --install [--env-file PATH]")
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


def cmd_bench(args) -> int:
    from .bench import run_bench

    lo, _, hi = args.seq_len.partition("-")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p.split(":")[0] not in ("old-settings", *PRESETS)]
    if unknown:
        raise InputError(f"unknown preset(s): {', '.join(unknown)}", hint=f"choose from old-settings, {', '.join(PRESETS)}")
    result = run_bench(presets, arch=args.arch, steps=args.steps, min_len=int(lo), max_len=int(hi or lo),
                       smoke=args.smoke, emit=lambda line: print(line, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        print(f"{result['gpu']}  arch {result['arch']}  rows {args.seq_len} tokens  {result['steps']} steps")
        print(f"{'preset':<14}{'tokens/s':>10}{'ms/step':>10}{'peak GiB':>10}{'MFU':>8}{'loss':>16}")
        for r in result["results"]:
            if "error" in r:
                print(f"{r['preset']:<14}failed: {r['error']}")
                continue
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
            peak = f"{r['peak_vram_gib']:.2f}" if r["peak_vram_gib"] is not None else "n/a"
            print(f"{r['preset']:<14}{r['tokens_per_s']:>10.0f}{r['ms_per_step']:>10.0f}{peak:>10}{mfu:>8}"
                  f"{r['first_loss']:>8.2f}→{r['last_loss']:.2f}")
    return 0


def cmd_report(args) -> int:
    from .report import summary, write_report

    path, curves = write_report(args.run_dir, args.out)
    print(summary(curves))
    print(f"wrote {path}")
    return 0


def cmd_merge(args) -> int:
    from .merge import gguf_instructions, merge

    path = merge(args.adapter, args.out, model=args.model, overwrite=args.overwrite,
                 trust_remote_code=args.trust_remote_code, say=lambda line: print(line, flush=True))
    print(f"wrote {path} (bf16 safetensors + tokenizer; loads with AutoModelForCausalLM, no peft needed)")
    print(gguf_instructions(path))
    return 0


COMMANDS = {"check": cmd_check, "doctor": cmd_doctor, "presets": cmd_presets, "train": cmd_train,
            "evaluate": cmd_evaluate, "bench": cmd_bench, "export": cmd_export,
            "report": cmd_report, "merge": cmd_merge}

if __name__ == "__main__":
    sys.exit(main())
