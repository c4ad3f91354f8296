#!/usr/bin/env bash
# A quick check before a long call (nvidia-h200-x2, carrying .whl): the CUDA tests of the fused kernels,
# benchmarks/cpu_cost.py, then real headless runs: one GPU, and `--gpus 2` split twice (20 steps each).
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
START=$(date +%s); say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
python3 -m pytest -q -p no:cacheprovider tests/test_fused_ce.py tests/test_rms_norm.py tests/test_fused_blocks.py 2>&1 | tail -4
python3 benchmarks/cpu_cost.py > "$OUT/cpu-cost.json" 2> /tmp/cpu.err; cat "$OUT/cpu-cost.json"; tail -3 /tmp/cpu.err | cut -c1-300
say checks
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export.jsonl
for n in 1 2 2; do
python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus $n --gpu-batch split --steps 20 --train-args "--score-rows 0" > "$OUT/new-$n-$RANDOM.json" 2>/tmp/m.err
say "$n: $(grep -h -o '"tokens_per_s": [0-9.]*' /tmp/m.err | tr '\n' ' ')"; grep -q error /tmp/m.err && tail -5 /tmp/m.err | cut -c1-300
done
