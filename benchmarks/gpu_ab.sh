#!/usr/bin/env bash
# A/B of code (not settings) on one GPU, in one call. .ab/ holds the older side:
#     rm -rf .ab && mkdir .ab && git archive <commit> core benchmarks/multi_gpu.py | tar -x -C .ab
# carried with .whl. 1) `core bench` of PRESETS, old/new/old/new (EXTRA: more presets on the first new row);
# 2) with REAL=1, one real headless run of each side (benchmarks/multi_gpu.py --gpus 1): the wall-clock rate a user
# gets, which counts the time between steps that the bench's per-step timing leaves out.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
STEPS=${STEPS:-24}
PRESETS=${PRESETS:-modern-bf16}
b() {  # b DIR PRESETS NAME
  (cd "$1" && PYTHONPATH=/tmp/site:$PWD python3 -m core bench --gpu-ids 0 --presets "$2" --steps "$STEPS" \
     --out "$OUT/$3.json" 2> "/tmp/$3.err" | grep -A6 "^preset" | grep -v "^tokens/s"; tail -2 "/tmp/$3.err" | cut -c1-300)
}
b .ab "$PRESETS" a1; b . "$PRESETS${EXTRA:+,$EXTRA}" b1; b .ab "$PRESETS" a2; b . "$PRESETS" b2
if [ "${REAL:-1}" = 1 ]; then
  python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
  python3 tests/genexport.py --seed 7 --rows "${ROWS:-6000}" --out /tmp/export.jsonl
  for side in old new; do
    dir=.; [ $side = old ] && dir=.ab
    (cd $dir && PYTHONPATH=/tmp/site:$PWD python3 benchmarks/multi_gpu.py --model /tmp/qwen-random \
       --dataset /tmp/export.jsonl --gpus 1 --gpu-batch split --steps 30 --train-args "--score-rows 0" \
       > "$OUT/real-$side.json" 2> /tmp/real.err; grep tokens_per_s /tmp/real.err | cut -c1-200)
  done
fi
