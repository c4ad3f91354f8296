#!/usr/bin/env bash
# Is the bench's position effect the cuDNN attention plan cache? modern-bf16 and its variants, each twice (ABAB),
# with and without cuDNN SDPA, in one process. Needs .whl (../shared/tools/device-wheels.sh plus liger-kernel).
set -uo pipefail
source benchmarks/device_env.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -m core bench --presets ${PRESETS:-modern-bf16,modern-bf16:cudnn_attention=false,modern-bf16:liger=false+cudnn_attention=false,modern-bf16:lora_dtype=float32+cudnn_attention=false,modern-bf16,modern-bf16:cudnn_attention=false,modern-bf16:liger=false+cudnn_attention=false,modern-bf16:lora_dtype=float32+cudnn_attention=false} \
  --steps ${STEPS:-24} --out $OUT/abab.json 2> $OUT/abab.err | tee $OUT/abab.txt
grep '^{' $OUT/abab.err > $OUT/abab-rows.jsonl
