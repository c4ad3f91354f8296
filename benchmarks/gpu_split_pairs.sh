#!/usr/bin/env bash
# The `--gpus 2` split figure from PAIRS alternating pairs of real runs (one GPU, then split on two), STEPS steps
# each, on nvidia-h200-x2 carrying .whl: one pair's ratio moves ±10% between calls (a 20-step median of 12 step
# rates), so the figure is the ratio of the medians over the pairs. First the CUDA tests of the step's host syncs
# and the fused RoPE (one GPU visible). Everything lands in $OUT/results.tar.gz.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
STEPS=${STEPS:-30}
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
RES=/tmp/res; mkdir -p $RES
CUDA_VISIBLE_DEVICES=0 python3 -m pytest -q -p no:cacheprovider tests/test_no_sync.py tests/test_rope.py \
  > $RES/cuda-tests.txt 2>&1; grep -E "^E  |passed|failed" $RES/cuda-tests.txt | head -30 | cut -c1-400
say "tests done"
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export.jsonl
for i in $(seq 1 "${PAIRS:-3}"); do
  for g in 1 2; do
    timeout 150 python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus $g \
      --gpu-batch split --steps "$STEPS" --train-args "--score-rows 0" > "$RES/pair$i-gpus$g.json" 2> "/tmp/e$i$g"
    say "pair $i, $g GPU(s): $(grep -o '"tokens_per_s": [0-9.]*' "$RES/pair$i-gpus$g.json" | tr '\n' ' ')"
    tar -czf "$OUT/results.tar.gz" -C $RES .  # (after each run: a call cut short keeps what it measured)
  done
done
python3 - "$RES" <<'PY' | tee "$RES/summary.txt"
import glob, json, statistics, sys
rate = lambda f: json.load(open(f))["results"][0]["tokens_per_s"]
one = [rate(f) for f in sorted(glob.glob(f"{sys.argv[1]}/pair*-gpus1.json"))]
two = [rate(f) for f in sorted(glob.glob(f"{sys.argv[1]}/pair*-gpus2.json"))]
print(f"one GPU {one}\nsplit   {two}\npairs   {[round(b / a, 3) for a, b in zip(one, two)]}")
print(f"median split / median one = {statistics.median(two):,.0f} / {statistics.median(one):,.0f} = "
      f"{statistics.median(two) / statistics.median(one):.3f}")
for f in sorted(glob.glob(f"{sys.argv[1]}/pair*-gpus*.json")):  # issue 15: under 10 s to the first step
    print(f.rsplit("/", 1)[-1], "start-up", json.load(open(f))["results"][0].get("startup"))
PY
tar -czf "$OUT/results.tar.gz" -C $RES .
say done
