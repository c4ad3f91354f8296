"""The training run: dataset → tokens → (4-bit) model + LoRA → TRL SFTTrainer → adapter folder.

`train()` runs in the calling thread, reports through `on_event`, and stops cleanly when `stop_event` is set
(finishing the current step, then saving the adapter and a resumable checkpoint).
"""
from __future__ import annotations

import json
import platform
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from . import distributed, history, output
from .dataset import DatasetReport, read_dataset, split_examples
from .errors import InputError, Problem, TrainerError
from .events import Event, Failed, Finished, LogLine, Phase, Progress
from .presets import TrainConfig, batch_description


def train(config: TrainConfig, dataset_path: str, output_dir: str, *,
          on_event: Callable[[Event], None] | None = None, stop_event: threading.Event | None = None,
          overwrite: bool = False, resume: bool = False, skip_invalid: bool = False) -> Path:
    emit = on_event or (lambda e: None)
    stop_event = stop_event or threading.Event()
    try:
        config.validate()
        report = read_dataset(dataset_path, skip_invalid=skip_invalid)
        if report.problems:
            emit(LogLine(f"skipped {len(report.problems)} invalid line(s) of {report.path}; "
                         f"training on {len(report.examples)} valid rows", "warning"))
        check_device(config)
        dirs = distributed.shared_dirs() or output.prepare(output_dir, overwrite=overwrite, resume=resume)
        if config.gpus > 1 and not distributed.is_worker():
            config, note = distributed.per_device(config, config.gpus)
            emit(LogLine(f"same effective batch on {config.gpus} workers: {note}"))
            return distributed.launch(config, dataset_path, dirs, emit, stop_event, skip_invalid=skip_invalid)
        if not distributed.is_main():
            emit = _quiet  # rank 0 reports for the whole run
        return _run(config, report, dirs, emit, stop_event)
    except TrainerError as exc:
        emit(Failed(exc.message, exc.hint, [p.render(exc.path) for p in exc.problems]))
        raise
    except Exception as exc:
        err = explain(exc, config)
        _keep_trace(exc)
        emit(Failed(err.message, err.hint))
        raise err from exc


def _quiet(event: Event) -> None:
    pass


def _keep_trace(exc: BaseException) -> None:
    """An unexpected error's traceback goes to stderr (the user sees the sentence; a bug report needs the trace)."""
    import sys
    import traceback

    print("".join(traceback.format_exception(exc)).rstrip(), file=sys.stderr, flush=True)


def explain(exc: BaseException, config: TrainConfig) -> TrainerError:
    """Turn a library exception into a sentence the user can act on."""
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower():
        return TrainerError(f"the GPU ran out of memory ({config.preset}, batch {config.batch_size}, "
                            f"max length {config.max_length})",
                            hint="lower --batch-size (and raise --grad-accum to keep the effective batch), lower "
                                 "--max-length, or pick the 8gb preset")
    return TrainerError(f"training failed: {text}", hint="the traceback above (stderr) says where; report this error")


def check_device(config: TrainConfig) -> None:
    """Refuse impossible hardware settings before any model loads, all problems at once."""
    import torch

    problems = []
    if config.device == "cuda":
        if not torch.cuda.is_available():
            problems.append(Problem(
                f"preset {config.preset!r} needs an NVIDIA GPU, but torch sees none"
                + ("" if torch.version.cuda else f" (this torch {torch.__version__} is a CPU-only build)"),
                fix="use --preset cpu, or install a CUDA build of torch on a machine with an NVIDIA driver"))
        else:
            if config.gpus > torch.cuda.device_count() and not distributed.rehearsal():
                problems.append(Problem(f"{config.gpus} GPUs asked for, but torch sees {torch.cuda.device_count()}",
                                        fix=f"use --gpus {torch.cuda.device_count()} (or --gpus all)"))
            if config.autocast == "bf16" or config.compute_dtype == "bfloat16":
                if not torch.cuda.is_bf16_supported():
                    name = torch.cuda.get_device_name(0)
                    problems.append(Problem(f"preset {config.preset!r} uses bf16, which {name} does not support",
                                            fix="use --preset t4-fp16 (fp16 tensor cores) or t4-fp32"))
            if config.quantization == "nf4":
                from .hardware import bnb_status

                ok, message = bnb_status(True)
                if not ok:
                    problems.append(Problem(message, fix="pip install -U bitsandbytes (on WSL, a CUDA build of "
                                                         "torch and the Windows NVIDIA driver), or --quantization none"))
    if problems:
        raise InputError(f"{len(problems)} problem(s) with the hardware for this run", problems=problems)


MIN_UPDATES = 64  # a token budget never leaves a run with fewer optimizer steps than this (small exports)


def fit_batch_to_data(config: TrainConfig, train_ds, emit) -> TrainConfig:
    """Shrink the token budget of a small export so the run still makes MIN_UPDATES optimizer steps."""
    if config.batch_tokens <= 0 or config.max_steps > 0:
        return config
    from dataclasses import replace

    from .batching import fit_budget_to_updates

    lengths = [len(r) for r in train_ds["input_ids"]]
    budget = fit_budget_to_updates(lengths, config.batch_tokens, config.batch_size,
                                   config.grad_accum * distributed.world_size(),
                                   config.epochs, MIN_UPDATES, floor_tokens=max(config.max_length, 1024),
                                   seed=config.seed)
    if budget == config.batch_tokens:
        return config
    emit(LogLine(f"small dataset ({len(lengths)} rows): micro-batches of ≤{budget:,} tokens instead of "
                 f"{config.batch_tokens:,}, so the run makes enough optimizer steps to learn (≥{MIN_UPDATES} "
                 "where the data allows)"))
    return replace(config, batch_tokens=budget)


def _run(config: TrainConfig, report: DatasetReport, dirs: output.RunDirs, emit, stop_event) -> Path:
    from .model_setup import build_trainer, load_model_and_tokenizer
    from .tokenize import tokenize_split

    t_start = time.perf_counter()
    quiet_libraries()
    tok, model, model_path = load_model_and_tokenizer(config, emit)
    emit(Phase("tokenizing", f"{len(report.examples)} rows"))
    train_ex, eval_ex = split_examples(report.examples, config.eval_fraction, config.seed)
    train_ds, eval_ds, fitted = tokenize_split(tok, train_ex, eval_ex, config.max_length,
                                               lambda done, total: emit(Progress("tokenizing", done, total)),
                                               truncation=config.truncation)
    for line, level in fitted.log_lines(config.max_length, config.truncation):
        emit(LogLine(line, level))
    config = fit_batch_to_data(config, train_ds, emit)
    main = distributed.is_main()
    dirs.work.mkdir(parents=True, exist_ok=True)
    if main:
        history.remember_run(dirs.output, config.preset, config.model, report.path)  # the TUI lists it; never raises
    if dirs.resume_from is not None and main:
        output.trim_metrics(dirs.metrics, int(dirs.resume_from.name.split("-")[-1]))
        emit(LogLine(f"resuming from {dirs.resume_from}"))
    started = dict(config=config.to_dict(), train_rows=len(train_ds), eval_rows=len(eval_ds) if eval_ds else 0,
                   device=config.device, output_dir=str(dirs.output))
    trainer, callback = build_trainer(config, model, tok, train_ds, eval_ds, dirs, emit, stop_event, started)
    emit(Phase("training", f"{len(train_ds)} rows, {' '.join(batch_description(config))}"))
    trainer.train(resume_from_checkpoint=str(dirs.resume_from) if dirs.resume_from else None)
    stopped = callback.stopped_early
    if eval_ds is not None and not stopped and callback.last_eval is None:
        trainer.evaluate()
    if not main:  # data-parallel: rank 0 saves the adapter and writes the record
        return dirs.output

    emit(Phase("saving", str(dirs.output)))
    trainer.model.save_pretrained(str(dirs.work))
    tok.save_pretrained(str(dirs.work))
    if not stopped:  # a finished run needs no resume point; TensorBoard logs (checkpoints/runs) stay
        for ckpt in dirs.checkpoints.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
        if not (dirs.checkpoints / "runs").is_dir():
            shutil.rmtree(dirs.checkpoints, ignore_errors=True)
    runtime = time.perf_counter() - t_start
    record = run_record(config, report, model_path, trainer.state, callback, stopped, runtime)
    output.write_atomic(dirs.work / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    final = output.finalize(dirs)
    ckpt = output.latest_checkpoint(final / "checkpoints") if stopped else None
    emit(Finished(output_dir=str(final), steps=trainer.state.global_step, total_steps=trainer.state.max_steps,
                  train_loss=callback.last_loss, eval_loss=callback.last_eval, stopped_early=stopped,
                  runtime_s=runtime, checkpoint_dir=str(ckpt) if ckpt else None))
    return final


def quiet_libraries() -> None:
    """Library chatter (progress bars, advisory warnings) would interleave with our events."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("peft").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(transformers|peft|trl|bitsandbytes|torch)\b.*")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_record(config, report, model_path, state, callback, stopped, runtime) -> dict:
    return {
        "tool": "genaptitude-trainer",
        "config": config.to_dict(),
        "model_path": str(model_path),
        "dataset": {"path": str(Path(report.path).resolve()), "sha256": report.sha256, "format": report.format,
                    "rows": len(report.examples), "skipped_lines": len(report.problems)},
        "versions": versions(),
        "steps": state.global_step,
        "total_steps": state.max_steps,
        "stopped_early": stopped,
        "final": {"train_loss": callback.last_loss, "eval_loss": callback.last_eval, "runtime_s": round(runtime, 2)},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
