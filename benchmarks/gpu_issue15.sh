#!/usr/bin/env bash
# Issue 15 in one call on a 2-GPU box (nvidia-h200-x2), carrying .whl and .peer/unsloth (a copy of
# ../shared/peers/unsloth with its wheels):
#   GPU 0: the peer harness, both sides on the same GPU: core bench of CORE_PRESETS (default: modern-bf16 as
#          committed, then capped to 22 GiB usable), then Unsloth's fastest setting (padded), STEPS steps each;
#   GPU 1, meanwhile: GPU1_STEPS (default: the learning check, benchmarks/gpu_learning.sh);
#   then both GPUs: `--gpus 1,2` split against one GPU (benchmarks/multi_gpu.py).
# TESTS=1 first runs the CUDA tests of the step's host syncs and the fused RoPE (one GPU visible). GPU1_MORE: more
# GPU 1 work after the learning check, e.g. the 8gb peak at 2048-token rows (`core bench --seq-len 1024-2048`).
# Files back (at most 8): summary.md, bench.json, unsloth.jsonl, log.txt (the peer run), learning-fast.jsonl,
# learning-reference.jsonl, multi-gpu.json, gpu1.txt.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
python3 benchmarks/cpu_cost.py --nvml  # what a memory reading costs a run at each logged step
if [ "${TESTS:-0}" = 1 ]; then
  CUDA_VISIBLE_DEVICES=0 python3 -m pytest -q -p no:cacheprovider tests/test_no_sync.py tests/test_rope.py 2>&1 \
    | grep -v "^  \|Warning\|^$" | tail -12 | cut -c1-400
  say "tests done"
fi
CORE_PRESETS=${CORE_PRESETS:-modern-bf16,modern-bf16:gpu_memory_fraction=0.1567}
CUDA_VISIBLE_DEVICES=0 ORDER="bench padded" CORE_PRESETS="$CORE_PRESETS" STEPS=${STEPS:-20} BUDGET=${BUDGET:-400} \
  OUT=/tmp/peer bash .peer/unsloth/run_gpu.sh > /tmp/peer-console.txt 2>&1 &
PEER=$!
# The peer harness reinstalls /tmp/site: GPU 1 starts once that is done, or it would import half-deleted packages.
until grep -qs "installed; building" /tmp/peer/log.txt || ! kill -0 $PEER 2>/dev/null; do sleep 1; done
LEARN='mkdir -p /tmp/learn && OUT=/tmp/learn bash benchmarks/gpu_learning.sh; cp /tmp/learn/learning-*.jsonl "$OUT"/'
( CUDA_VISIBLE_DEVICES=1 bash -c "${GPU1_STEPS:-$LEARN}; ${GPU1_MORE:-true}" > "$OUT/gpu1.txt" 2>&1 ) &
wait $PEER
say "peer run done"
wait
say "GPU 1 done"
cp /tmp/peer/summary.md /tmp/peer/bench.json /tmp/peer/unsloth.jsonl /tmp/peer/log.txt "$OUT"/ 2>/dev/null
tail -25 "$OUT/gpu1.txt" | cut -c1-200
cat /tmp/peer/summary.md
if [ "${MULTI:-1}" = 1 ]; then
  python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1
  python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export20k.jsonl
  timeout ${MULTI_LIMIT:-200} python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export20k.jsonl \
    --gpus 1,2 --gpu-batch split --steps 20 --train-args "--score-rows 0" > "$OUT/multi-gpu.json" 2> /tmp/multi.err
  say "multi rc=$?"; grep -v "it/s\]" /tmp/multi.err | tail -4 | cut -c1-400
fi
say "done"
