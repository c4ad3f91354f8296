#!/usr/bin/env bash
# Code A/B of real headless runs on a 2-GPU box (nvidia-h200-x2), the older core/ in .ab/ (see gpu_ab.sh), carried
# with .whl: benchmarks/cpu_cost.py and the CUDA tests (no host sync a step, the fused loss) first, then STEPS-step runs
# (benchmarks/multi_gpu.py): one GPU new, split new/old/new/old, one GPU old; PROFILE=1 then profiles a split run of
# the new code with Python stacks (prof/rank0.txt, rank1.txt: idle time, host waits by line, launches by op).
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
STEPS=${STEPS:-20}
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
python3 benchmarks/cpu_cost.py > "$OUT/cpu-cost.json" 2> /tmp/cpu.err; cat "$OUT/cpu-cost.json"; tail -3 /tmp/cpu.err
python3 -m pytest -q -p no:cacheprovider tests/test_no_sync.py tests/test_step_readout.py tests/test_fused_ce.py \
  tests/test_rms_norm.py 2>&1 | tail -8
say "checks done"
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows "${ROWS:-20000}" --out /tmp/export.jsonl
m() {  # m DIR GPUS NAME
  (cd "$1" && PYTHONPATH=/tmp/site:$PWD python3 benchmarks/multi_gpu.py --model /tmp/qwen-random \
     --dataset /tmp/export.jsonl --gpus "$2" --gpu-batch split --steps "$STEPS" --train-args "--score-rows 0" \
     > "$OUT/$3.json" 2> "/tmp/$3.err")
  say "$3: $(grep -o '"tokens_per_s": [0-9.]*' "$OUT/$3.json" | tr '\n' ' ')"
  grep -q '"error"' "$OUT/$3.json" && grep -v "it/s\]" "/tmp/$3.err" | tail -5 | cut -c1-300
}
m . 1 one-new; m . 2 split-new1; m .ab 2 split-old1; m . 2 split-new2; m .ab 2 split-old2; m .ab 1 one-old
if [ "${PROFILE:-0}" = 1 ]; then
  GENAPTITUDE_TRAINER_PROFILE=$OUT/prof GENAPTITUDE_TRAINER_PROFILE_STACKS=1 python3 benchmarks/multi_gpu.py \
    --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus 2 --gpu-batch split --steps 12 \
    --train-args "--score-rows 0" > "$OUT/split-profiled.json" 2> /tmp/prof.err; tail -2 /tmp/prof.err | cut -c1-300
  for r in 0 1; do head -3 "$OUT/prof/rank$r.txt"; sed -n '/host waits/,/^$/p' "$OUT/prof/rank$r.txt" | cut -c1-220; done
fi
say done
