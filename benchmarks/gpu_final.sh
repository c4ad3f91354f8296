#!/usr/bin/env bash
# The H100 numbers in benchmarks/README.md: every preset against the old settings in one run (rows 128-1024),
# then the presets at 2048-token rows (the 8gb bar) in a second run. Needs .whl (../shared/tools/device-wheels.sh
# plus liger-kernel). Writes JSON and logs into $OUT.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m core bench --presets old-settings,modern-bf16,8gb,t4-fp16,t4-fp32,modern-bf16:fused_ce=false,modern-bf16:liger=false \
  --steps 24 --out $OUT/bench.json 2> $OUT/bench.err | tee $OUT/bench.txt
python3 -m core bench --presets old-settings,8gb,modern-bf16,t4-fp16 --seq-len 1024-2048 --steps 14 \
  --out $OUT/bench-2048.json 2> $OUT/bench-2048.err | tee $OUT/bench-2048.txt
grep -h "^{" $OUT/bench.err $OUT/bench-2048.err > $OUT/rows.jsonl
