#!/usr/bin/env bash
# Final H100 call: bench (rows 128-1024), the 8gb preset at 2048 tokens, and real OOM recovery under a memory cap.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m core bench --presets old-settings,modern-bf16,modern-bf16:batch_size=64,8gb,t4-fp16,t4-fp32 --steps 20 \
  --out $OUT/bench.json 2> $OUT/bench.err | tee $OUT/bench.txt
python3 -m core bench --presets 8gb,8gb:batch_size=2 --seq-len 1024-2048 --steps 12 --out $OUT/bench-8gb-2048.json \
  2> $OUT/bench-8gb.err | tee $OUT/bench-8gb-2048.txt
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --tokenizer .gpu/tok --out /tmp/qwen-random >/dev/null 2>&1
python3 -m core train --dataset dataset.jsonl --model /tmp/qwen-random --preset modern-bf16 --batch-size 64 \
  --max-steps 6 --gpu-memory-fraction 0.07 --output /tmp/out-oom 2>&1 | tee $OUT/oom-h100.log | grep -v "^step"
