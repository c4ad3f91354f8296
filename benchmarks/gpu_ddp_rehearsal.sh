#!/usr/bin/env bash
# On a single GPU: (1) the data-parallel code path rehearsed with 2 workers on cuda:0 (gloo), modern-bf16 on a
# random-weight Qwen2.5-1.5B, against 1 process with the same effective batch: same losses? events, per-GPU memory;
# (2) how much a GPU loses at the per-GPU micro-batch of a 2-way split (16k tokens) vs 32k (the 2-GPU scaling bound).
set -uo pipefail
source benchmarks/device_env.sh || exit 1
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1
common="--dataset dataset.jsonl --model /tmp/qwen-random --preset modern-bf16 --max-steps 8 --batch-tokens 8192 --grad-accum 2 --eval-fraction 0.05 --json"
python3 -m core train $common --output /tmp/one > $OUT/one.jsonl 2> $OUT/one.err; echo "one rc=$?"
GENAPTITUDE_TRAINER_DDP_REHEARSAL=1 python3 -m core train $common --gpus 2 --output /tmp/two > $OUT/two.jsonl 2> $OUT/two.err; echo "two rc=$?"
tail -3 $OUT/two.err
for f in one two; do grep '"event": "step"' $OUT/$f.jsonl | python3 -c "
import sys, json
for l in sys.stdin:
    d = json.loads(l); print('$f', d['step'], round(d['loss'], 4), round(d['grad_norm'] or 0, 4))"; done
grep '"event": "memory"' $OUT/two.jsonl | tail -1
python3 -m core bench --presets modern-bf16,modern-bf16:batch_tokens=16384+batch_size=128,modern-bf16,modern-bf16:batch_tokens=16384+batch_size=128 \
  --steps 24 --out $OUT/split.json 2> $OUT/split.err | tee $OUT/split.txt
