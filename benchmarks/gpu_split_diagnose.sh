#!/usr/bin/env bash
# Profile: where a `--gpus 2` split step (16k tokens a GPU, bound by the CPU) spends its time, in one call on
# nvidia-h200-x2 carrying .whl: the box's CPU/GPU topology (NUMA nodes, each GPU's CPU affinity), the CUDA no-sync
# test, benchmarks/cpu_cost.py (what each small op costs the host and the GPU), then two profiled split runs of 12
# steps: cProfile (GENAPTITUDE_TRAINER_PROFILE_PYTHON=1: Python time by package and function, python/rank*.txt) and
# torch's profiler (GPU idle, host waits, launches by op, torch/rank*.txt).
# Everything lands in $OUT/results.tar.gz.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
RES=/tmp/res; mkdir -p $RES
{ nvidia-smi topo -m; lscpu | grep -i "numa\|model name\|^cpu(s)\|thread\|socket"; } > $RES/topology.txt 2>&1
cat $RES/topology.txt
CUDA_VISIBLE_DEVICES=0 python3 -m pytest -q -p no:cacheprovider tests/test_no_sync.py > $RES/no-sync.txt 2>&1
grep -E "^E  |passed|failed" $RES/no-sync.txt | head -20 | cut -c1-400
say "test done"
python3 benchmarks/cpu_cost.py --nvml > $RES/cpu-cost.json 2> /tmp/cpu.err  # what each op and a memory reading cost
say "cpu_cost: $(tail -1 /tmp/cpu.err | cut -c1-200)"
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export.jsonl
for kind in python torch; do
  extra=(); [ $kind = python ] && extra=(GENAPTITUDE_TRAINER_PROFILE_PYTHON=1)
  env ${extra[@]+"${extra[@]}"} GENAPTITUDE_TRAINER_PROFILE=$RES/$kind timeout 200 python3 benchmarks/multi_gpu.py \
    --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus 2 --gpu-batch split --steps 12 \
    --train-args "--score-rows 0" > "$RES/split-$kind.json" 2> /tmp/$kind.err
  say "$kind profile: $(ls $RES/$kind 2>/dev/null | tr '\n' ' ')"; tail -2 /tmp/$kind.err | cut -c1-300
  for r in 0 1; do head -16 "$RES/$kind/rank$r.txt" 2>/dev/null | cut -c1-160; done
  tar -czf "$OUT/results.tar.gz" -C $RES .
done
say done
