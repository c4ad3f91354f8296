#!/usr/bin/env bash
# Profiles of a `--gpus 2` split run (each worker: prof/rank0.txt, rank1.txt) and of one GPU at the same 16k tokens a
# micro-batch (prof1/rank0.txt), 12 steps each, on nvidia-h200-x2 carrying .whl (core/train/profiling.py).
source benchmarks/device_env.sh || exit 1
export NCCL_NVLS_ENABLE=0
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random > /dev/null 2>&1
python3 tests/genexport.py --seed 7 --rows 20000 --out /tmp/export.jsonl
GENAPTITUDE_TRAINER_PROFILE=$OUT/prof python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus 2 --gpu-batch split --steps 12 --train-args "--score-rows 0" > $OUT/split-profiled.json 2>/tmp/err; tail -3 /tmp/err | cut -c1-300
GENAPTITUDE_TRAINER_PROFILE=$OUT/prof1 python3 benchmarks/multi_gpu.py --model /tmp/qwen-random --dataset /tmp/export.jsonl --gpus 1 --gpu-batch split --steps 12 --train-args "--score-rows 0 --batch-tokens 16384" > $OUT/one-16k-profiled.json 2>/tmp/err; tail -3 /tmp/err | cut -c1-300
head -75 $OUT/prof/rank*.txt $OUT/prof1/rank0.txt | cut -c1-170
