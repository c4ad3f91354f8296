"""`genaptitude-trainer`: the headless CLI (Colab, scripts, CI). Same engine as the TUI.

This module holds the parser (every command and flag) and `main`, which runs a command and turns its errors into
exit codes; each command group lives in a module of its own: `prepare` (check, doctor, presets), `train` (train,
runs, attach, stop), `adapter` (evaluate, export, report, merge), `bench`.

Exit codes: 0 success, 1 the run failed, 2 bad input or settings (nothing written), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.cli.adapter import cmd_evaluate, cmd_export, cmd_merge, cmd_report
from core.cli.bench import cmd_bench
from core.cli.prepare import cmd_check, cmd_doctor, cmd_presets
from core.cli.train import cmd_attach, cmd_runs, cmd_stop, cmd_train
from core.errors import InputError, TrainerError
from core.presets import SETTINGS, Setting
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


_PARSE = {"gpus": _gpus, "gpu_ids": _gpu_id_list}  # settings whose text needs more than Setting.parse


def _typed(s: Setting):
    """argparse's `type` for a setting: its one reading of text (Setting.parse), its complaint as argparse's."""
    def parse(text: str):
        try:
            return s.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    parse.__name__ = s.name
    return parse


def _add_setting(p, s: Setting, **kw) -> None:
    """`s`'s flag (core.presets.SETTINGS: TrainConfig's field metadata), default None: the preset's value stays.
    Booleans take --x / --no-x; lists are comma-separated."""
    kw.setdefault("help", s.help.replace("%", "%%"))  # argparse formats help with %
    if s.kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw.setdefault("type", _PARSE.get(s.name) or _typed(s))
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
    # train's own defaults (TrainConfig's fields), so a check without flags measures what a run without them does
    p.add_argument("--max-length", type=int, default=SETTINGS["max_length"].default,
                   help="the max length to measure rows against (default: train's, %(default)s)")
    p.add_argument("--truncation", choices=SETTINGS["truncation"].choices, default=SETTINGS["truncation"].default,
                   help="how train will handle rows over --max-length (said in the report; default: train's, "
                        "%(default)s)")
    _add_setting(p, SETTINGS["instruction_turn"], help="where train puts an instruction/input row's instruction: "
                 "system (default; the input is the user turn, as RAISE prompts) or user (joined with the input)")
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
    p = sub.add_parser("export", help="zip the adapter (Colab download), install it, or write a GGUF for "
                                      "RAISE / llama.cpp / Ollama")
    p.add_argument("--adapter", default=DEFAULT_OUTPUT)
    p.add_argument("--zip", dest="zip_path", default=None, help="write the adapter into this zip file")
    p.add_argument("--install", action="store_true", help="copy into --lora-root and set RAISE_LORA_PATH")
    p.add_argument("--lora-root", default="~/genaptitude-llm/ai-assets/lora")
    p.add_argument("--env-file", default=None, help="GenAptitude's .env to update (backed up first)")
    from core.adapter.gguf_export import DEFAULT_TYPE, TYPES  # names only: no torch, no gguf

    g = p.add_argument_group("GGUF (llama.cpp, Ollama, RAISE): the adapter merged into its base, one file")
    g.add_argument("--gguf", nargs="?", const=DEFAULT_TYPE, default=None, choices=list(TYPES), metavar="TYPE",
                   help=f"write a GGUF file of this type ({', '.join(TYPES)}; default {DEFAULT_TYPE}) and "
                        "NAME.tokenizer.json beside it, with the gguf package alone (no llama.cpp). The K-quants "
                        "(Q4_K_M...) need llama.cpp's llama-quantize, run on a q8_0 or f16 file written here")
    g.add_argument("--out", default=None, help="the GGUF file, NAME.gguf (default: <adapter>-<TYPE>.gguf beside "
                                               "the adapter)")
    g.add_argument("--raise-env", default=None, metavar="PATH/TO/RAISE/.env",
                   help="also copy both files into that RAISE's models folder (PATH_RAISE_ASSET/models) and print "
                        "its ai_llm settings; Qwen2 bases only")
    g.add_argument("--model", default=None, help="base model (default: the one the adapter was trained on)")
    g.add_argument("--overwrite", action="store_true", help="replace files of the same name (--out, RAISE's models)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code to run")

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


# -- runs that outlive the terminal: runs, attach, stop (core/cli/train.py) ------------------------------------
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


COMMANDS = {"check": cmd_check, "doctor": cmd_doctor, "presets": cmd_presets, "train": cmd_train,
            "evaluate": cmd_evaluate, "bench": cmd_bench, "export": cmd_export,
            "report": cmd_report, "merge": cmd_merge, "runs": cmd_runs, "attach": cmd_attach, "stop": cmd_stop}
