#!/usr/bin/env bash
# TUI attached vs headless CLI on the H100 (issue: within 3%). Random-weight Qwen2.5-1.5B with the bundled
# tokenizer trained on dataset.jsonl, a 5,000-row generated export, modern-bf16, alternating runs.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1
python3 tests/genexport.py --seed 5 --rows 5000 --out /tmp/export5k.jsonl
python3 benchmarks/tui_overhead.py --preset modern-bf16 --model /tmp/qwen-random --dataset /tmp/export5k.jsonl \
  --steps ${STEPS:-24} --pairs ${PAIRS:-3} --engine ${ENGINE:-process} > $OUT/tui-overhead.json 2> $OUT/tui-overhead.err
tail -12 $OUT/tui-overhead.err; cat $OUT/tui-overhead.json
