"""`bench`: tokens/s, ms/step, peak VRAM and MFU of presets against the old script's settings, as a table or JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli.gpu_choice import say_stderr, use_gpus
from core.errors import InputError
from core.presets import PRESETS


def preset_specs(text: str) -> list[str]:
    """`cpu,cpu:lora_targets=q_proj,v_proj` -> ["cpu", "cpu:lora_targets=q_proj,v_proj"]: a comma starts the next
    preset only where a preset's name follows it; otherwise it belongs to a list setting's value."""
    names = ("old-settings", *PRESETS)
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if specs and piece.split(":")[0] not in names and ":" in specs[-1]:
            specs[-1] += "," + piece
        elif piece:
            specs.append(piece)
    return specs


def cmd_bench(args) -> int:
    if not args.smoke:  # a CPU harness test needs no GPU
        use_gpus(1, args.gpu_ids, say=say_stderr)
    from core.train.bench import run_bench

    lo, _, hi = args.seq_len.partition("-")
    presets = preset_specs(args.presets)
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
