"""The commands to look before a run: `check` (a dataset as the model will see it), `doctor` (this machine's GPUs,
CUDA and the preset it suggests), `presets` (each preset's values and the reason for each)."""
from __future__ import annotations

import json

from core.cli.gpu_choice import use_gpus
from core.presets import BUNDLED_MODEL, PRESETS


def cmd_check(args) -> int:
    from core.data.check import check_dataset, render_check

    result = check_dataset(args.dataset, model=None if args.no_tokens else (args.model or BUNDLED_MODEL),
                           max_length=args.max_length, skip_invalid=args.skip_invalid,
                           truncation=args.truncation, instruction_turn=args.instruction_turn or "system")
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else render_check(result))
    return 0


def cmd_doctor(args) -> int:
    from core.estimate import usable_on
    from core.gpus import describe
    from core.hardware import probe
    from core.presets import config_for
    from core.suggest import suggest
    from core.train.resolve import before_load, precision_words

    plan = use_gpus(args.gpus or 1, args.gpu_ids)  # before torch: its CUDA check then sees what a run would
    report = probe(check_torch=True)
    s = suggest(report)
    # what a run of the suggested preset chooses here before loading (core/train/resolve.py, as the run does)
    suggested = config_for(s.preset)
    here = before_load(suggested, amx=report.cpu_amx_bf16, usable_gib=usable_on(suggested, plan))
    if args.json:
        print(json.dumps({**report.to_dict(), "suggested_preset": s.preset, "reason": s.reason,
                          "suggested_gpus": s.gpus, "run_gpus": list(plan.ids), "run_gpus_reason": plan.reason,
                          "gpu_warnings": plan.warnings, "resolved": here.to_dict(),
                          "precision": precision_words(here.config)}, indent=2))
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
    if s.preset == "cpu":
        print("CPU: AMX bf16 units: the cpu preset trains in bf16 (--no-cpu-bf16: fp32)" if report.cpu_amx_bf16 else
              "CPU: no AMX bf16 units: the cpu preset trains in fp32 (bf16 would be slower here)")
    print(f"a {s.preset} run here computes in {precision_words(here.config)}"
          + "".join(f"; {c.said}" for c in here.choices if c.setting == "quantization"))
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
