"""How a run's events look in a terminal: JSON lines (`--json`, the TUI's run process) or human lines, with
progress and downloads thinned to a line per tenth (or twentieth) of the way."""
from __future__ import annotations

from pathlib import Path


def json_printer(event) -> None:
    print(event.to_json(), flush=True)


_shown_progress: dict[str, tuple[int, int]] = {}  # phase -> (tenth, done) last printed: a line per 10% at most


def human_printer(event) -> None:
    from core.presets import batch_label, config_from_dict
    from core.events import (
        CheckpointSaved, Diverged, DownloadProgress, EvalLogged, Finished, HeldOutScored, LogLine, OomRecovered, Phase,
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
    elif isinstance(event, Diverged):
        if event.fatal:
            print(f"error: diverged at step {event.step}: {event.why}; stopping without saving the adapter "
                  f"(its weights are NaN)", flush=True)
        else:
            print(f"warning: diverging at step {event.step}: {event.why}; {event.advice}", flush=True)
    elif isinstance(event, HeldOutScored):
        from core.train.learncheck import describe

        print(describe(event), flush=True)
        if event.advice:
            print(f"{'warning' if event.verdict in ('not learned', 'diverged') else 'note'}: {event.advice}",
                  flush=True)
    elif isinstance(event, Finished) and event.diverged:
        print(f"diverged after {event.steps}/{event.total_steps} steps in {event.runtime_s:.0f}s: {event.diverged}; "
              f"the adapter in {event.output_dir} is not worth using", flush=True)
    elif isinstance(event, Finished):
        state = "stopped early" if event.stopped_early else "finished"
        print(f"{state} after {event.steps}/{event.total_steps} steps in {event.runtime_s:.0f}s; "
              f"adapter: {event.output_dir}", flush=True)
        if event.checkpoint_dir:
            print(f"resume with: genaptitude-trainer train --resume --output {event.output_dir} ...", flush=True)
        # RAISE (GenAptitude) loads one GGUF plus its tokenizer.json and reads no adapter folder today (README)
        print(f"for RAISE: genaptitude-trainer export --adapter {event.output_dir} --gguf q8_0 "
              f"--out {Path(event.output_dir).name}.gguf [--raise-env RAISE/.env]", flush=True)


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
