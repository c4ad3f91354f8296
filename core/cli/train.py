"""The commands of a training run: `train` (the flags into a TrainConfig, the GPUs pinned, Ctrl-C as a clean stop)
and those for runs that outlive the terminal: `runs`, `attach`, `stop`."""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from core.cli.gpu_choice import tell_gpus, use_gpus
from core.cli.printers import human_printer, json_printer
from core.errors import InputError, TrainerError
from core.presets import GPU_IDS_FIX, SETTINGS, gpu_count, gpu_ids_mismatch


def resolve_config(args, run_gpus: tuple[int, ...] | None = None):
    """The run's TrainConfig from the flags. `run_gpus`: the GPUs it was pinned to, which the suggested preset
    must fit (not the freest GPU of the box)."""
    from core.presets import config_for

    overrides = {name: v for name in SETTINGS if (v := getattr(args, name)) is not None}
    if args.gpus is None and args.gpu_ids:  # over --config-json's count too
        overrides["gpus"] = gpu_count(None, args.gpu_ids)
    overrides.pop("preset", None)  # --preset picks the base the overrides apply to (--config-json replaces it)
    if getattr(args, "config_json", None):
        from core.presets import config_from_dict

        return config_from_dict({**json.loads(Path(args.config_json).read_text(encoding="utf-8")), **overrides})
    preset = args.preset
    if preset is None:
        from core.hardware import probe
        from core.suggest import suggest

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
    count = gpu_count(args.gpus, ids) or count
    mismatch = gpu_ids_mismatch(count, ids)
    if mismatch:
        raise InputError(mismatch, hint=GPU_IDS_FIX)
    return device, count, ids


def _need_gib(config) -> float | None:
    """The VRAM estimate of one GPU's share of the run (None when the settings are too broken to estimate: the
    run's validation says why, next)."""
    from core.estimate import estimate_vram
    from core.train.resolve import before_load

    try:  # as the run will load it (core/train/resolve.py); it takes the share of one GPU itself
        return estimate_vram(before_load(config).config).total_gib
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
    (the launcher reads why it failed there), then human lines, tracebacks included, into <run>/train.log; a failure
    goes to the launch log as well."""
    from core.runs.journal import redirect_output
    from core.runs.output import LOG

    import os

    from core.events import Failed

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose; a stray hangup must not end the run
    owned: list[int] = []  # the launch log's descriptor, kept once the output goes to train.log

    def printer(event) -> None:
        (human_printer if owned else json_printer)(event)
        if owned and isinstance(event, Failed):  # also in the launch log: a run refused before it trained takes
            os.write(owned[0], (event.to_json() + "\n").encode())  # its folder (train.log too) away as it ends

    def on_owned(dirs) -> None:
        launch_log = os.dup(1)
        redirect_output(dirs.work / LOG)
        owned.append(launch_log)

    return printer, on_owned


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
        elif run.resumable:
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
