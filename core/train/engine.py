"""The training run: dataset → tokens → (4-bit) model + LoRA → TRL SFTTrainer → adapter folder.

`train()` runs in the calling thread, reports through `on_event`, and stops cleanly when `stop_event` is set
(finishing the current step, then saving the adapter and a resumable checkpoint).
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from core.data.dataset import DatasetReport, read_dataset
from core.data.examples import split_examples
from core.errors import InputError, Problem, Stopped, TrainerError
from core.estimate import expected_quantization
from core.events import Event, Failed, Finished, LogLine, Phase, Progress
from core.libraries import quiet_libraries, versions
from core.presets import TrainConfig, batch_description, config_changes
from core.runs import history, output
from core.runs.journal import Journal
from core.train import distributed, divergence
from core.train import resolve


def train(config: TrainConfig, dataset_path: str, output_dir: str, *,
          on_event: Callable[[Event], None] | None = None, stop_event: threading.Event | None = None,
          overwrite: bool = False, resume: bool = False, skip_invalid: bool = False,
          on_owned: Callable[[output.RunDirs], None] | None = None) -> Path:
    """`on_owned(dirs)` is called once this run holds its folder's lock (a detached run sends its output there)."""
    emit = on_event or (lambda e: None)
    # The process that prepares the folder keeps its events in it (events.jsonl); data-parallel workers report
    # through their launcher, which does.
    journal = None if distributed.is_worker() else Journal(emit)
    emit = journal or emit
    stop_event = stop_event or threading.Event()
    dirs = None
    refused = False  # a TrainerError: a folder this run made and trained nothing in goes (core.runs.output.leave)
    try:
        config.validate()
        report = read_dataset(dataset_path, skip_invalid=skip_invalid, instruction_turn=config.instruction_turn)
        if report.problems:
            emit(LogLine(f"skipped {len(report.problems)} invalid line(s) of {report.path}; "
                         f"training on {len(report.examples)} valid rows", "warning"))
        check_device(config)
        dirs = distributed.shared_dirs() or output.prepare(output_dir, overwrite=overwrite, resume=resume,
                                                           say=lambda line: emit(LogLine(line, "warning")))
        if journal is not None and dirs.lock is not None:
            journal.open(dirs.events)
            if on_owned is not None:
                on_owned(dirs)
        if config.gpus > 1 and not distributed.is_worker():
            config = resolve.Resolved(config).take(*resolve.per_device(config), emit)
            return distributed.launch(config, dataset_path, dirs, emit, stop_event, skip_invalid=skip_invalid)
        if not distributed.is_main():
            emit = _quiet  # rank 0 reports for the whole run
        return _run(config, report, dirs, emit, stop_event)
    except TrainerError as exc:
        emit(Failed(exc.message, exc.hint, [p.render(exc.path) for p in exc.problems]))
        refused = not isinstance(exc, Stopped)  # (a stop keeps its events: the next run says how it ended)
        raise
    except Exception as exc:  # noqa: BLE001 - a library's error as a sentence (explain); _keep_trace keeps its traceback
        err = explain(exc, config)
        _keep_trace(exc)
        emit(Failed(err.message, err.hint))
        raise err from exc
    finally:
        if distributed.is_worker():
            distributed.leave_group()
        if journal is not None:
            journal.close()
        if dirs is not None and dirs.lock is not None:
            output.leave(dirs, refused=refused)  # the last thing: a follower that sees the lock free has every event


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
        else:  # the rule is core.gpus.fit_problems', as the TUI's; the facts are torch's
            from core.gpus import fit_problems

            count = config.gpus if distributed.rehearsal() else torch.cuda.device_count()
            problems += fit_problems(config, count=count, bf16=torch.cuda.is_bf16_supported(),
                                     name=torch.cuda.get_device_name(0))
            from core.train.memory import nvml_usable_gib

            usable = nvml_usable_gib(config, range(config.gpus))  # the facts first, then the rule
            if expected_quantization(config, usable_gib=usable) == "nf4":
                from core.hardware import bnb_status

                ok, message = bnb_status(True)
                if not ok:
                    problems.append(Problem(message, fix="pip install -U bitsandbytes (on WSL, a CUDA build of "
                                                         "torch and the Windows NVIDIA driver), or --quantization none"))
    if problems:
        raise InputError(f"{len(problems)} problem(s) with the hardware for this run", problems=problems)


def checkpoint_config(ckpt: Path) -> dict:
    """The settings (TrainConfig.to_dict) the checkpoint was trained with: its own record (core.train.callbacks),
    else the run.json of the stopped run it belongs to; {} when neither says (a checkpoint of an older version)."""
    from core.train.callbacks import RUN_CONFIG

    try:
        saved = json.loads((ckpt / RUN_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            saved = output.read_run_json(ckpt.parent.parent).get("config")
        except InputError:  # a damaged record: nothing to compare with; the resume itself does not need it
            saved = None
    return saved if isinstance(saved, dict) else {}


def prompt_layout(config: TrainConfig, report: DatasetReport, tok, emit) -> dict | None:
    """Lay out an instruction/input dataset's rows for this tokenizer (core.data.layout: the setting, or the user
    turn where the template has no system role), say how in the log, and return what run.json records of it
    (None for other formats): the layout, the setting, and the instruction most rows share (chat offers it)."""
    if report.format != "alpaca":
        return None
    from core.data.layout import common_instruction, describe, instruction_turn_for, lay_out

    turn = instruction_turn_for(tok, config.instruction_turn)
    report.examples = lay_out(report.examples, turn)
    emit(LogLine(f"prompts: {describe(turn, config.instruction_turn)}",
                 "warning" if turn != config.instruction_turn else "info"))
    common = common_instruction(report.examples)
    return {"instruction_turn": turn, "setting": config.instruction_turn,
            "instruction": common[0] if common else None, "instruction_rows": common[1] if common else 0}


def _run(config: TrainConfig, report: DatasetReport, dirs: output.RunDirs, emit, stop_event) -> Path:
    from core.train.model_setup import build_trainer, load_model_and_tokenizer
    from core.train.profiling import profile_steps

    t_start = time.perf_counter()
    quiet_libraries()
    # 1. load the model, resolving what the hardware and the model decide (precision, quantization, lr); each
    #    choice a setting leaves to the run is kept with its reason (core/train/resolve.py, run.json's "resolved")
    resolved = resolve.Resolved(config)
    tok, model, model_path, config = load_model_and_tokenizer(config, emit, stop_event, resolved)
    config = resolved.take(*resolve.learning_rate(config, getattr(model.config, "model_type", "?"),
                                                  getattr(model.config, "hidden_size", 0)), emit)
    # 2. tokenize: prompts laid out for this tokenizer, the held-out split, rows fitted into max length
    layout, train_ex, eval_ex, train_ds, eval_ds = _tokenize(config, report, tok, emit)
    # 3. resolve what the data and the memory left decide: the batches, then the layers recomputed
    config, checkpointing = _fit_to_data(resolved, model, train_ds, emit)
    # 4. train (from the checkpoint when resuming); 5. save the adapter; 6. check what it learned; 7. the record
    main = distributed.is_main()
    dirs.work.mkdir(parents=True, exist_ok=True)
    if main:
        history.remember_run(dirs.output, config.preset, config.model, report.path)  # the TUI lists it; never raises
    if dirs.resume_from is not None and main:
        output.trim_metrics(dirs.metrics, output.checkpoint_step(dirs.resume_from))
        emit(LogLine(f"resuming from {dirs.resume_from}"))
        changed = config_changes(checkpoint_config(dirs.resume_from), config)
        if changed:  # as torchtune's recipes do: a resumed run says what it no longer shares with its checkpoint
            emit(LogLine(f"resuming with settings that differ from the checkpoint's: {', '.join(changed)}; the "
                         "run goes on with the new values", "warning"))
    started = dict(config=config.to_dict(), train_rows=len(train_ds), eval_rows=len(eval_ds) if eval_ds else 0,
                   device=config.device, output_dir=str(dirs.output))
    trainer, callback = build_trainer(config, model, tok, train_ds, eval_ds, dirs, emit, stop_event, started)
    profile_steps(trainer, f"rank{distributed.rank()}")  # only with GENAPTITUDE_TRAINER_PROFILE set
    emit(Phase("training", f"{len(train_ds)} rows, {' '.join(batch_description(config))}"))
    trainer.train(resume_from_checkpoint=str(dirs.resume_from) if dirs.resume_from else None)
    if callback.watch.fatal is not None:  # NaN weights: no adapter, the checkpoints before kept (train/divergence.py)
        raise divergence.end_of_nan_run(callback.watch.fatal, dirs, run_record(
            config, report, model_path, trainer.state, callback, False, time.perf_counter() - t_start), config.lr,
            config.autocast)
    stopped = callback.stopped_early
    if eval_ds is not None and not stopped and callback.last_eval is None:
        trainer.evaluate()
    if distributed.world_size() > 1:
        _worker_record(dirs, callback, checkpointing, config)
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
    diverged = None if stopped else callback.watch.at_end(callback.last_loss, callback.last_eval)
    scored = None if stopped else _score(config, tok, trainer.model, eval_ex, emit, stop_event, diverged)
    diverged = divergence.after_check(diverged, scored)
    runtime = time.perf_counter() - t_start
    record = run_record(config, report, model_path, trainer.state, callback, stopped, runtime)
    record.update(status="diverged" if diverged else "stopped" if stopped else "finished",
                  **({"diverged": {"why": diverged}} if diverged else {}))
    record["activation_checkpointing"] = checkpointing.to_dict()
    if layout is not None:
        record["prompt_layout"] = layout
    record["resolved"] = resolved.to_dict()  # what the run chose for the settings it was left, and why
    if scored is not None:
        record["held_out"] = {k: v for k, v in scored.to_dict().items() if k != "event"}
    output.write_atomic(dirs.work / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    final = output.finalize(dirs)
    ckpt = output.latest_checkpoint(final / "checkpoints") if stopped else None
    emit(Finished(output_dir=str(final), steps=trainer.state.global_step, total_steps=trainer.state.max_steps,
                  train_loss=callback.last_loss, eval_loss=callback.last_eval, stopped_early=stopped,
                  runtime_s=runtime, checkpoint_dir=str(ckpt) if ckpt else None, diverged=diverged or ""))
    return final


def _tokenize(config: TrainConfig, report: DatasetReport, tok, emit):
    """(the prompt layout run.json records, train rows, held-out rows, their token datasets): the rows laid out for
    this tokenizer (prompt_layout), the split by seed, each row fitted into max length by the truncation rule, what
    fitting did said in the log."""
    from core.data.tokenize import tokenize_split

    layout = prompt_layout(config, report, tok, emit)
    emit(Phase("tokenizing", f"{len(report.examples)} rows"))
    train_ex, eval_ex = split_examples(report.examples, config.eval_fraction, config.seed)
    train_ds, eval_ds, fitted = tokenize_split(tok, train_ex, eval_ex, config.max_length,
                                               lambda done, total: emit(Progress("tokenizing", done, total)),
                                               truncation=config.truncation)
    for line, level in fitted.log_lines(config.max_length, config.truncation):
        emit(LogLine(line, level))
    return layout, train_ex, eval_ex, train_ds, eval_ds


def _fit_to_data(resolved: resolve.Resolved, model, train_ds, emit):
    """(config, recompute plan): a small export's batches fitted so it makes its updates, then the decoder layers
    recomputed in backward from those batches and the memory left (model_setup.plan_checkpointing applies it)."""
    from core.train.model_setup import plan_checkpointing

    config, fitted, few = resolve.batches(resolved.config, [len(r) for r in train_ds["input_ids"]],
                                          distributed.world_size())
    resolved.take(config, fitted, emit)
    if few:
        emit(LogLine(few, "warning"))
    checkpointing = plan_checkpointing(config, model, emit)
    resolved.take(config, resolve.Choice("gradient_checkpointing", checkpointing.layers, checkpointing.describe()))
    return config, checkpointing


def _score(config: TrainConfig, tok, model, eval_ex, emit, stop_event, diverged: str | None = None):
    """The after-run check (core.train.learncheck): held-out rows answered by base and adapter, within the preset's
    row and time budget; a failure here never costs the user the adapter, which is saved already."""
    from core.adapter.evaluate import Fitting
    from core.train.learncheck import score_run

    if config.score_rows <= 0 or config.score_seconds <= 0:
        return None
    if not [e for e in eval_ex if e.text is None]:
        emit(LogLine("no held-out chat rows (--eval-fraction 0?): the after-run check of what the adapter "
                     "learned was skipped", "warning"))
        return None
    emit(Phase("checking", f"answering up to {config.score_rows} held-out rows with the base model and the "
                           f"adapter (≤{config.score_seconds:.0f}s)"))
    try:
        scored = score_run(tok, model, eval_ex, rows=config.score_rows, seconds=config.score_seconds,
                           epochs=config.epochs, lr=config.lr, stop_event=stop_event, autocast=config.autocast,
                           fitting=Fitting(config.max_length, config.truncation), diverged=diverged)
    except Exception as exc:  # noqa: BLE001 - the adapter is saved; the check is advice, say why it is missing
        _keep_trace(exc)
        emit(LogLine(f"the after-run check could not answer the held-out rows: {type(exc).__name__}: {exc}",
                     "warning"))
        return None
    if scored is not None:
        emit(scored)
    elif not stop_event.is_set():
        emit(LogLine(f"the after-run check ran out of its {config.score_seconds:.0f} s before any held-out answer was "
                     "whole (a busy machine?): `genaptitude-trainer evaluate --compare` scores the adapter without a "
                     "time limit, --score-seconds gives the check more", "warning"))
    return scored


def _worker_record(dirs, callback, checkpointing, config) -> None:
    """Each data-parallel worker's own numbers (worker-RANK.json beside run.json): its micro-batches, tokens, memory
    and recompute plan. Rank 0's events speak for the run; these tell a worker that holds or does more than the
    others (NVML has shown a second GPU at 83 GiB where rank 0 peaked at 35)."""
    rank, counter = distributed.rank(), callback.counter
    record = {"rank": rank, "micro_batches": len(counter.history), "tokens": counter.tokens,
              "tokens_per_micro_batch_max": max(counter.history, default=0),
              "activation_checkpointing": checkpointing.to_dict()}
    if config.device == "cuda":
        import torch

        record.update(torch_peak_gib=round(torch.cuda.max_memory_allocated() / 1024 ** 3, 3),
                      torch_reserved_peak_gib=round(torch.cuda.max_memory_reserved() / 1024 ** 3, 3),
                      device=torch.cuda.current_device())
    output.write_atomic(dirs.work / f"worker-{rank}.json", json.dumps(record, indent=1) + "\n")


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
        "startup": callback.startup,  # seconds from the command's start to training and to the first step done
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
