#!/usr/bin/env bash
# `--gpus 2 --gpu-batch split` on a 2-GPU box (nvidia-h200-x2), code A/B in one call: the older core/ in .ab/
#     rm -rf .ab && mkdir .ab && git archive <commit> core benchmarks/multi_gpu.py | tar -x -C .ab
# carried with .whl. Real headless runs (benchmarks/multi_gpu.py, STEPS steps, the median of the step lines after
# step 8): one GPU (new), then split new/old/new/old; then (PROFILE=1) a profiled split run of the new side, each
# worker's report (core/train/profiling.py: rank0.txt, rank1.txt).
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
STEPS=${STEPS:-24}
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows "${ROWS:-20000}" --out /tmp/export.jsonl
m() {  # m DIR GPUS NAME [ENV...]
  local dir=$1 gpus=$2 name=$3; shift 3
  (cd "$dir" && env "$@" PYTHONPATH=/tmp/site:$PWD python3 benchmarks/multi_gpu.py --model /tmp/qwen-random \
     --dataset /tmp/export.jsonl --gpus "$gpus" --gpu-batch split --steps "$STEPS" ${TRAIN_ARGS:+--train-args "$TRAIN_ARGS"} \
     > "$OUT/$name.json" 2> "/tmp/$name.err")
  say "$name: $(grep -o '"tokens_per_s": [0-9.]*' "$OUT/$name.json" | tr '\n' ' ')"
  grep -q '"error"' "$OUT/$name.json" && grep -v "it/s\]" "/tmp/$name.err" | tail -5 | cut -c1-300
}
export TRAIN_ARGS=${TRAIN_ARGS:---score-rows 0}
m . 1 one-gpu
for round in 1 2; do m . 2 split-new$round; m .ab 2 split-old$round; done
if [ "${PROFILE:-1}" = 1 ]; then
  STEPS=12 m . 2 split-profiled GENAPTITUDE_TRAINER_PROFILE=$OUT/prof
  head -60 "$OUT"/prof/rank*.txt | cut -c1-160
fi
say done
