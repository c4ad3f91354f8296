#!/usr/bin/env bash
# Speed levers of issue 15 on a 2-GPU box (nvidia-h200-x2), in one call: `core bench` of UNCAPPED presets on GPU 0
# and of CAPPED presets (22 GiB usable: gpu_memory_fraction 0.1567 of an H200) on GPU 1 at the same time, then
# `--gpus 1,2` split runs (benchmarks/multi_gpu.py) with MULTI_ARGS as extra train flags. Needs .whl carried.
# OLD: presets benched on GPU 0 first by an older checkout's core/ carried in .ab/ (git archive <commit> core | tar
# -x -C .ab), for an A/B of code rather than settings; UNCAPPED runs after it on the same GPU.
#     UNCAPPED="modern-bf16,modern-bf16:quantization=none" CAPPED="..." MULTI_ARGS="--quantization none" \
#         bash benchmarks/gpu_levers.sh
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
STEPS=${STEPS:-20}
bench() {  # bench NAME GPU PRESETS
  python3 -m core bench --gpu-ids "$2" --presets "$3" --steps "$STEPS" --out "$OUT/$1.json" > "/tmp/$1.txt" 2> "/tmp/$1.err"
  echo "rc=$?" >> "/tmp/$1.txt"
}
gpu0() {
  if [ -n "${OLD:-}" ]; then
    (cd .ab && PYTHONPATH=/tmp/site:$PWD python3 -m core bench --gpu-ids 0 --presets "$OLD" --steps "$STEPS" \
       --out "$OUT/old.json" > /tmp/old.txt 2> /tmp/old.err; echo "rc=$?" >> /tmp/old.txt)
  fi
  [ -n "${UNCAPPED:-}" ] && bench uncapped 0 "$UNCAPPED"
}
gpu0 &
[ -n "${CAPPED:-}" ] && bench capped 1 "$CAPPED" &
wait
say "benches done"
for n in old uncapped capped; do [ -f /tmp/$n.txt ] && { cat /tmp/$n.txt; grep -v "it/s\]" /tmp/$n.err | tail -5 | cut -c1-300; }; done
if [ -n "${MULTI:-}" ]; then
  python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1
  python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export20k.jsonl
  python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export20k.jsonl --gpus 1,2 \
    --gpu-batch split --steps "${MULTI_STEPS:-20}" --train-args "${MULTI_ARGS:-}" > "$OUT/multi-gpu.json" 2> /tmp/multi.err
  say "multi rc=$?"; grep -v "it/s\]" /tmp/multi.err | tail -6 | cut -c1-400; cat "$OUT/multi-gpu.json"
fi
say "done"
