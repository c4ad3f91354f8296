#!/usr/bin/env bash
# Data-parallel scaling on a machine with 2-8 GPUs (nvidia-h200-x2 / -x4): modern-bf16 on 1, 2 and 4 GPUs, with the
# effective batch kept (split) and with each GPU keeping its micro-batch (each). Needs .whl as the other scripts.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export20k.jsonl
python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export20k.jsonl --gpus ${GPUS:-1,2,4} \
  --steps ${STEPS:-30} > $OUT/multi-gpu.json 2> $OUT/multi-gpu.err
tail -8 $OUT/multi-gpu.err; cat $OUT/multi-gpu.json
