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

from core.errors import InputError, TrainerError
from core.presets import BUNDLED_MODEL, PRESETS, SETTINGS, Setting
from core.runs.output import DEFAULT_OUTPUT


def _gpus(text: str) -> int:
    """`--gpus 2` or `--gpus all` (every GPU NVML sees, or those CUDA_VISIBLE_DEVICES names)."""
    if text.strip().lower() == "all":
        import os

        from core.gpus import visible_gpus
        from core.hardware import probe

        return max(len(visible_gpus(probe().gpus, os.environ.get("CUDA_VISIBLE_DEVICES")) or []), 1)
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GPUs (give e.g. 2, or all)") from None
    if n < 1:
        raise argparse.ArgumentTypeError("the number of GPUs must be at least 1")
    return n


def _gpu_id_list(text: str) -> tuple[int, ...]:
    from core.gpus import parse_ids

    try:
        return parse_ids(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_PARSE = {"gpus": _gpus, "gpu_ids": _gpu_id_list}  # settings whose text needs more than int()/float()


def _add_setting(p, s: Setting, **kw) -> None:
    """`s`'s flag (core.presets.SETTINGS: TrainConfig's field metadata), default None: the preset's value stays.
    Booleans take --x / --no-x; lists are comma-separated."""
    kw.setdefault("help", s.help.replace("%", "%%"))  # argparse formats help with %
    if s.kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw.setdefault("type", _PARSE.get(s.name) or (str if s.kind is tuple else s.kind))
        kw.setdefault("choices", s.choices)
        if s.kind is tuple:
            kw.setdefault("metavar", "IDS" if s.item is int else "A,B")
        if s.bare is not None:
            kw.update(nargs="?", const=s.bare)
    p.add_argument(s.flag, dest=s.name, default=None, **kw)
    if s.off is not None:
        p.add_argument("--no-" + s.flag[2:], dest=s.name, action="store_const", const=s.off,
                       help=f"the same as {s.flag} {s.off}")


def _add_overrides(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag, grouped as its metadata says (`resolve_config` gathers them)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS.values():
        if s.group not in groups:
            groups[s.group] = p.add_argument_group(f"{s.group} (each replaces the preset's value)")
        _add_setting(groups[s.group], s)


def _add_gpu_ids(p) -> None:
    _add_setting(p, SETTINGS["gpu_ids"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genaptitude-trainer",
                                     description="Fine-tune a LoRA adapter for GenAptitude on a dataset.jsonl export.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a dataset and show how the model will see it")
    p.add_argument("dataset")
    p.add_argument("--model", default=None, help="tokenizer to count with (default: the bundled model)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--truncation", choices=SETTINGS["truncation"].choices, default="keep-answer",
                   help="how train will handle rows over --max-length (said in the report)")
    p.add_argument("--skip-invalid", action="store_true")
    p.add_argument("--no-tokens", action="store_true", help="skip token statistics (no model needed)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="report GPUs, CUDA, bitsandbytes, the suggested preset and the GPUs a run uses")
    p.add_argument("--json", action="store_true")
    p.add_argument("--gpus", type=_gpus, default=None, help="say which N GPUs a --gpus N run would use")
    _add_gpu_ids(p)

    p = sub.add_parser("presets", help="list presets and the reason for each value")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a LoRA adapter")
    p.add_argument("--dataset", default="dataset.jsonl")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    p.add_argument("--overwrite", action="store_true", help="replace an existing adapter in --output")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of --output")
    p.add_argument("--skip-invalid", action="store_true", help="train on the valid rows, report the others")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.add_argument("--config-json", default=None, help="a whole training configuration as JSON (what the TUI "
                                                      "sends its run process); replaces --preset, overrides apply")
    p.add_argument("--detached", action="store_true", help="(the TUI's run process) JSON events until the run owns "
                   "its folder, then all output into <run>/train.log; SIGHUP is ignored")
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
    _add_gpu_ids(p)
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

    _add_run_commands(sub)

    p = sub.add_parser("bench", help="tokens/s, ms/step, peak VRAM and MFU: presets vs the old script's settings")
    p.add_argument("--presets", default="old-settings,modern-bf16,8gb,t4-fp16,t4-fp32",
                   help="comma-separated; old-settings is the old train.py configuration")
    p.add_argument("--arch", default="qwen2.5-1.5b", help="random weights of this architecture (offline)")
    p.add_argument("--seq-len", default="128-1024", help="uniform row lengths MIN-MAX")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--smoke", action="store_true", help="tiny architecture on CPU (tests the harness)")
    p.add_argument("--out", default=None, help="write the JSON result here")
    p.add_argument("--json", action="store_true")
    _add_gpu_ids(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainerError as exc:
        return _refused(args, exc)
    except (OSError, ValueError) as exc:  # a path given on the command line: missing, unreadable, not JSON
        return _refused(args, InputError(_sentence(exc), hint="check the files and folders given on the command line"))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: its traceback for the report, then the sentence on the last line
        import traceback

        traceback.print_exc()
        print(f"error: {_sentence(exc)} (a bug in genaptitude-trainer: please report it with the traceback above)",
              file=sys.stderr)
        return 1


def _refused(args, exc: TrainerError) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False))
    print(f"error: {exc.render()}", file=sys.stderr)
    return exc.exit_code


def _sentence(exc: BaseException) -> str:
    """One line for an exception: the file and the system's reason for an OSError, else its type and first line."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def cmd_check(args) -> int:
    from core.data.check import check_dataset, render_check

    result = check_dataset(args.dataset, model=None if args.no_tokens else (args.model or BUNDLED_MODEL),
                           max_length=args.max_length, skip_invalid=args.skip_invalid,
                           truncation=args.truncation)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else render_check(result))
    return 0


def use_gpus(count: int = 1, ids: tuple[int, ...] | None = None, *, say=None):
    """Choose this command's GPUs (core/gpus.py) and pin this process to them before torch starts CUDA; children
    inherit the variables. `say(text, level)` tells the user which and why. None inside a data-parallel worker,
    whose launcher gave it its GPUs."""
    from core import gpus
    from core.train import distributed

    if distributed.is_worker():
        return None
    plan = gpus.plan(1 if distributed.rehearsal() else count, tuple(ids or ()))
    gpus.pin(plan)
    if say:
        tell_gpus(plan, say)
    return plan


def tell_gpus(plan, say, need_gib: float | None = None) -> None:
    """Which GPUs and why, then a warning for each one other processes already fill (before the model loads)."""
    from core.gpus import busy_warnings

    if plan is None or not plan.gpus:
        return
    say(f"{plan.reason}; CUDA_VISIBLE_DEVICES={plan.env['CUDA_VISIBLE_DEVICES']}", "info")
    for warning in busy_warnings(plan.gpus, need_gib):
        say(warning, "warning")


def _say_stderr(text: str, level: str) -> None:
    print(f"{level}: {text}", file=sys.stderr, flush=True)


def cmd_doctor(args) -> int:
    from core.gpus import describe
    from core.hardware import probe
    from core.presets import suggest

    plan = use_gpus(args.gpus or 1, args.gpu_ids)  # before torch: its CUDA check then sees what a run would
    report = probe(check_torch=True)
    s = suggest(report)
    if args.json:
        print(json.dumps({**report.to_dict(), "suggested_preset": s.preset, "reason": s.reason,
                          "suggested_gpus": s.gpus, "run_gpus": list(plan.ids), "run_gpus_reason": plan.reason,
                          "gpu_warnings": plan.warnings}, indent=2))
        return 0
    if report.gpus:
        for g in report.gpus:
            cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "?"
            print(f"{describe(g)} (compute capability {cc}, bf16 {'yes' if g.bf16 else 'no'})")
        print(f"driver {report.driver_version}, CUDA {report.cuda_driver_version}")
        if plan.gpus:
            print(f"a run uses {plan.reason}")
            others = [g.index for g in plan.candidates if g not in plan.gpus]
            if others:
                print(f"    (it sets CUDA_VISIBLE_DEVICES={plan.env['CUDA_VISIBLE_DEVICES']} for the run; another "
                      f"choice: --gpu-ids {others[0]})")
        else:
            print(plan.reason)
        for warning in plan.warnings:
            print(f"warning: {warning}")
        if report.nvml_error:  # some GPU could not be read: the list above is partial
            print(f"warning: {report.nvml_error}")
    else:
        print(f"no GPU: {report.nvml_error}")
    if report.torch_version is None:
        print("torch: not installed (pip install torch)")
    else:
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


def resolve_config(args, run_gpus: tuple[int, ...] | None = None):
    """The run's TrainConfig from the flags. `run_gpus`: the GPUs it was pinned to, which the suggested preset
    must fit (not the freest GPU of the box)."""
    from core.presets import config_for

    overrides = {name: v for name in SETTINGS if (v := getattr(args, name)) is not None}
    overrides.pop("preset", None)  # --preset picks the base the overrides apply to (--config-json replaces it)
    if args.gpu_ids and args.gpus is None:
        overrides["gpus"] = len(args.gpu_ids)
    if getattr(args, "config_json", None):
        from core.presets import config_from_dict

        return config_from_dict({**json.loads(Path(args.config_json).read_text(encoding="utf-8")), **overrides})
    preset = args.preset
    if preset is None:
        from core.hardware import probe
        from core.presets import suggest

        report = probe(check_torch=True)
        if run_gpus:
            report.gpus = [g for g in report.gpus if g.index in run_gpus]
        preset = suggest(report).preset
    return config_for(preset, **overrides)


def _run_gpus(args) -> tuple[str | None, int, tuple[int, ...]]:
    """(device, number of GPUs, GPU ids) the train flags ask for, read before the config is built (building it may
    ask torch for a suggestion, and torch must start CUDA on the chosen GPUs only). device None: not known yet."""
    from core.presets import PRESETS as presets

    if args.config_json:
        d = json.loads(Path(args.config_json).read_text(encoding="utf-8"))
        device, count, ids = d.get("device"), d.get("gpus", 1), tuple(d.get("gpu_ids") or ())
    else:
        device, count, ids = (presets[args.preset].config.device if args.preset else None), 1, ()
    ids = args.gpu_ids or ids
    count = args.gpus or (len(ids) if ids else count)
    if ids and count != len(ids):
        raise InputError(f"--gpus {count} but --gpu-ids names {len(ids)} GPU(s)",
                         hint="give --gpu-ids alone: it sets the number of GPUs")
    return device, count, ids


def _need_gib(config) -> float | None:
    """The VRAM estimate of one GPU's share of the run (None when the settings are too broken to estimate: the
    run's validation says why, next)."""
    from core.estimate import estimate_vram
    from core.train.distributed import per_device

    try:
        return estimate_vram(per_device(config, config.gpus)[0]).total_gib
    except (TrainerError, ValueError, ArithmeticError):  # e.g. a batch that cannot split: validation says so next
        return None


def cmd_train(args) -> int:
    from core.events import LogLine
    from core.train.engine import train

    printer = json_printer if args.json else human_printer
    on_owned = None
    if args.detached:
        printer, on_owned = _detached_output()
    device, count, ids = _run_gpus(args)
    plan = use_gpus(count, ids) if device != "cpu" else None
    config = resolve_config(args, plan.ids if plan else None)
    if config.device == "cuda":
        tell_gpus(plan, lambda text, level: printer(LogLine(text, level)), need_gib=_need_gib(config))
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving the adapter and a checkpoint "
              "(press again to abort without saving)", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        train(config, args.dataset, args.output, on_event=printer, stop_event=stop, overwrite=args.overwrite,
              resume=args.resume, skip_invalid=args.skip_invalid, on_owned=on_owned)
    except TrainerError as exc:
        if args.json:  # the Failed event already went out as JSON
            print(f"error: {exc.render()}", file=sys.stderr)
            return exc.exit_code
        raise
    return 0


def _detached_output():
    """A detached run (core/workers.start_run) prints JSON events to its launch log until it owns its run folder
    (the launcher reads why it failed there), then human lines, tracebacks included, into <run>/train.log."""
    from core.runs.output import LOG, redirect_output

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose; a stray hangup must not end the run
    owned: list[bool] = []

    def printer(event) -> None:
        (human_printer if owned else json_printer)(event)

    def on_owned(dirs) -> None:
        redirect_output(dirs.work / LOG)
        owned.append(True)

    return printer, on_owned


def json_printer(event) -> None:
    print(event.to_json(), flush=True)


_shown_progress: dict[str, tuple[int, int]] = {}  # phase -> (tenth, done) last printed: a line per 10% at most


def human_printer(event) -> None:
    from core.presets import batch_label, config_from_dict
    from core.events import (
        CheckpointSaved, DownloadProgress, EvalLogged, Finished, HeldOutScored, LogLine, OomRecovered, Phase,
        Progress, RunStarted, StepLogged, loss_text,
    )

    if isinstance(event, Phase):
        print(f"[{event.name}] {event.detail}", flush=True)
    elif isinstance(event, DownloadProgress):
        _print_download(event)
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
        print(f"step {event.step}/{event.total_steps}  loss {loss_text(event.loss)}  lr {event.lr:.2e}  "
              f"{event.tokens_per_s:.0f} tok/s  eta {eta}", flush=True)
    elif isinstance(event, EvalLogged):
        print(f"eval loss {loss_text(event.eval_loss)} at step {event.step}", flush=True)
    elif isinstance(event, CheckpointSaved):
        print(f"checkpoint saved: {event.path}", flush=True)
    elif isinstance(event, OomRecovered):
        print(f"out of memory at step {event.step}: batch {event.old_batch_size}→{event.new_batch_size}, "
              f"accumulation {event.old_grad_accum}→{event.new_grad_accum} (same effective batch)", flush=True)
    elif isinstance(event, HeldOutScored):
        from core.train.learncheck import describe

        print(describe(event), flush=True)
        if event.advice:
            print(f"{'warning' if event.verdict == 'not learned' else 'note'}: {event.advice}", flush=True)
    elif isinstance(event, Finished):
        state = "stopped early" if event.stopped_early else "finished"
        print(f"{state} after {event.steps}/{event.total_steps} steps in {event.runtime_s:.0f}s; "
              f"adapter: {event.output_dir}", flush=True)
        if event.checkpoint_dir:
            print(f"resume with: genaptitude-trainer train --resume --output {event.output_dir} ...", flush=True)
        print(f"GenAptitude: set RAISE_LORA_PATH={event.output_dir}", flush=True)


_shown_download: dict[str, tuple[int, float]] = {}  # repo -> (twentieth, time) last printed


def _print_download(e) -> None:
    """A line per 5% of the bytes, or every 10 s when the transfer is slow, and the last one."""
    import time

    from core.download import download_line

    now = time.monotonic()
    step = e.done * 20 // e.total if e.total > 0 else 20
    last_step, last_time = _shown_download.get(e.repo_id, (-1, 0.0))
    if step != last_step or now - last_time >= 10 or (e.done == e.total and last_step != 20):
        _shown_download[e.repo_id] = (step, now)
        print(f"[{e.phase}] {download_line(e)}", flush=True)


def cmd_evaluate(args) -> int:
    use_gpus(1, args.gpu_ids, say=_say_stderr)
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
    if not args.smoke:  # a CPU harness test needs no GPU
        use_gpus(1, args.gpu_ids, say=_say_stderr)
    from core.train.bench import run_bench

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
        lo, hi = result["seq_len"]
        print(f"{result['gpu']}  arch {result['arch']}  rows {lo}-{hi} tokens  {result['steps']} steps")
        # tokens/s: the median of per-step rates; all: every steady step's real tokens ÷ their whole time
        print(f"{'preset':<14}{'tokens/s':>10}{'all':>10}{'tokens':>10}{'ms/step':>10}{'peak GiB':>10}{'MFU':>8}"
              f"{'ckpt':>7}{'loss':>16}")
        for r in result["results"]:
            if "error" in r:
                print(f"{r['preset']:<14}failed: {r['error']}")
                continue
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
            peak = f"{r['peak_vram_gib']:.2f}" if r["peak_vram_gib"] is not None else "n/a"
            ckpt = f"{r['checkpointing']['layers']}/{r['checkpointing']['total']}"  # layers recomputed
            print(f"{r['preset']:<14}{r['tokens_per_s']:>10.0f}{r['tokens_per_s_total']:>10.0f}"
                  f"{r['tokens_total']:>10}{r['ms_per_step']:>10.0f}{peak:>10}{mfu:>8}{ckpt:>7}"
                  f"{r['first_loss']:>8.2f}→{r['last_loss']:.2f}")
        first = next((r["skipped_steps"] + 1 for r in result["results"] if "skipped_steps" in r), None)
        if first is not None:
            print(f"tokens/s: the median of per-step rates; all: real tokens ÷ time over steps "
                  f"{first}-{result['steps']}")
    return 0


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


# -- runs that outlive the terminal: runs, attach, stop --------------------------------------------------------
def _add_run_commands(sub) -> None:
    p = sub.add_parser("runs", help="live and past runs: state, step, last loss, folder (one RUN: its details)")
    p.add_argument("run", nargs="?", metavar="RUN", help="a run's --output folder (or its .partial)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("attach", help="follow a run that is going: a line per step, as train prints (Ctrl-C "
                                      "leaves it running)")
    p.add_argument("run", metavar="RUN", help="the run's --output folder (or its .partial)")
    p = sub.add_parser("stop", help="stop a run that is going: it finishes its step, saves the adapter and a "
                                    "resumable checkpoint")
    p.add_argument("run", metavar="RUN", help="the run's --output folder (or its .partial)")
    p.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the save")


def _run_row(run) -> dict:
    from core.events import loss_text

    steps = f"{run.steps}/{run.total_steps}" if run.total_steps else str(run.steps or "–")
    loss = loss_text(run.train_loss)
    owner = run.owner.describe() if run.owner is not None and run.state == "running" else ""
    return {"state": run.state, "steps": steps, "loss": loss, "folder": str(run.path), "owner": owner}


def cmd_runs(args) -> int:
    from core.runs.history import find_runs, load_one

    if args.run:
        run = load_one(args.run)
        if args.json:
            print(json.dumps(_run_row(run), ensure_ascii=False))
            return 0
        row = _run_row(run)
        print(f"{row['state']}: step {row['steps']}, last loss {row['loss']}, folder {row['folder']}"
              + (f" ({row['owner']})" if row["owner"] else ""))
        if run.state == "running":
            print(f"follow it: genaptitude-trainer attach {run.path} · stop it: genaptitude-trainer stop {run.path}")
        elif run.checkpoint is not None and run.state in ("unfinished", "stopped"):
            print(f"resume it: genaptitude-trainer train --resume --output {run.output} ...")
        return 0
    history = find_runs(None)
    rows = [_run_row(r) for r in history.runs]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print(f"no runs found in {history.where()}")
        return 0
    print(f"{'state':<11}{'step':>11}  {'loss':>8}  folder")
    for row in rows:
        print(f"{row['state']:<11}{row['steps']:>11}  {row['loss']:>8}  {row['folder']}"
              + (f"  ({row['owner']})" if row["owner"] else ""))
    return 0


def _follow_printing(run_dir: str, replay: bool = True) -> int:
    """Print the run's events as `train` does until it ends (from its start, or from now); Ctrl-C leaves it
    running. Exit 0 when it finished or was stopped with its adapter saved; a run that failed or died raises."""
    from core.runs.workers import follow

    leave = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: leave.set())
    if follow(run_dir, human_printer, leave_event=leave, replay=replay) is None:
        print(f"left the run going; come back with: genaptitude-trainer attach {run_dir}", file=sys.stderr)
    return 0


def cmd_attach(args) -> int:
    from core.runs.history import load_one

    run = load_one(args.run)
    if run.state != "running":
        raise InputError(f"{run.output} has no run going ({run.state})",
                         hint=f"its curves: genaptitude-trainer report {run.path} · all runs: genaptitude-trainer runs")
    return _follow_printing(str(run.output))


def cmd_stop(args) -> int:
    from core.runs.workers import stop_run

    owner = stop_run(args.run)
    print(f"asked the run ({owner.describe()}) to stop: it finishes its step, then saves the adapter and a "
          "checkpoint", flush=True)
    if args.no_wait:
        return 0
    return _follow_printing(args.run, replay=False)


COMMANDS = {"check": cmd_check, "doctor": cmd_doctor, "presets": cmd_presets, "train": cmd_train,
            "evaluate": cmd_evaluate, "bench": cmd_bench, "export": cmd_export,
            "report": cmd_report, "merge": cmd_merge, "runs": cmd_runs, "attach": cmd_attach, "stop": cmd_stop}

if __name__ == "__main__":
    sys.exit(main())
