#!/usr/bin/env bash
# Code A/B of real headless runs on a 2-GPU box (nvidia-h200-x2), the older core/ in .ab/ (see gpu_ab.sh), carried
# with .whl: benchmarks/cpu_cost.py and the CUDA tests (no host sync a step, the fused loss) first, then STEPS-step runs
# (benchmarks/multi_gpu.py): one GPU new, split new/old/new/old, one GPU old. With LEVER (train flags, e.g.
# LEVER=--fused-rope): one GPU new+lever, then split new+lever/new/old twice. PROFILE=1 then profiles a split run of
# the new code (+lever) with Python stacks (prof/rank0.txt, rank1.txt: idle time, host waits by line, launches by op).
# Everything lands in $OUT/results.tar.gz (the device returns at most 8 files).
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
STEPS=${STEPS:-20}
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
RES=/tmp/res; mkdir -p $RES
[ "${CPU_COST:-1}" = 1 ] && { python3 benchmarks/cpu_cost.py > "$RES/cpu-cost.json" 2> /tmp/cpu.err; tail -3 /tmp/cpu.err; }
CUDA_VISIBLE_DEVICES=0 python3 -m pytest -q -p no:cacheprovider tests/test_no_sync.py tests/test_step_readout.py tests/test_fused_ce.py \
  tests/test_rms_norm.py tests/test_rope.py > $RES/cuda-tests.txt 2>&1; grep -v "^  \|Warning\|^$" $RES/cuda-tests.txt | tail -25 | cut -c1-400
say "checks done"
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows "${ROWS:-20000}" --out /tmp/export.jsonl
m() {  # m DIR GPUS NAME [TRAIN FLAGS]
  (cd "$1" && PYTHONPATH=/tmp/site:$PWD python3 benchmarks/multi_gpu.py --model /tmp/qwen-random \
     --dataset /tmp/export.jsonl --gpus "$2" --gpu-batch split --steps "$STEPS" --train-args "--score-rows 0 ${4:-}" \
     > "$RES/$3.json" 2> "/tmp/$3.err")
  say "$3: $(grep -o '"tokens_per_s": [0-9.]*' "$RES/$3.json" | tr '\n' ' ')"
  grep -q '"error"' "$RES/$3.json" && grep -v "it/s\]" "/tmp/$3.err" | tail -5 | cut -c1-300
}
if [ -n "${LEVER:-}" ]; then
  m . 1 one-lever "$LEVER"
  for i in 1 2; do m . 2 split-lever$i "$LEVER"; m . 2 split-new$i; m .ab 2 split-old$i; done
else
  m . 1 one-new; m . 2 split-new1; m .ab 2 split-old1; m . 2 split-new2; m .ab 2 split-old2; m .ab 1 one-old
fi
if [ "${PROFILE:-0}" = 1 ]; then
  GENAPTITUDE_TRAINER_PROFILE=$RES/prof GENAPTITUDE_TRAINER_PROFILE_STACKS=1 python3 benchmarks/multi_gpu.py \
    --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus 2 --gpu-batch split --steps 12 \
    --train-args "--score-rows 0 ${LEVER:-}" > "$RES/split-profiled.json" 2> /tmp/prof.err; tail -2 /tmp/prof.err | cut -c1-300
  for r in 0 1; do head -3 "$RES/prof/rank$r.txt"; sed -n '/host waits/,/^$/p' "$RES/prof/rank$r.txt" | cut -c1-220; done
fi
tar -czf "$OUT/results.tar.gz" -C $RES .
say done
