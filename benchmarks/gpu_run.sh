#!/usr/bin/env bash
# What runs on the lent H100 (see benchmarks/README.md). Needs .whl (../shared/tools/device-wheels.sh) and
# .gpu/tok (the bundled SmolLM2 tokenizer files) carried along. Writes logs and JSON into $OUT.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m core doctor | tee $OUT/doctor.txt
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --tokenizer .gpu/tok --out /tmp/qwen-random >/dev/null
for preset in ${PRESETS:-modern-bf16 t4-fp16 t4-fp32}; do
  echo "== train 20 steps: $preset"
  python3 -m core train --dataset dataset.jsonl --model /tmp/qwen-random --preset $preset --max-steps 20 \
    --output /tmp/out-$preset --json > $OUT/train-$preset.jsonl 2> $OUT/train-$preset.err
  echo "exit $?"; grep -E '"event": "(step|finished|failed)"' $OUT/train-$preset.jsonl | python3 -c "
import sys, json
for l in sys.stdin:
    e = json.loads(l)
    if e['event'] == 'step': print(e['step'], round(e['loss'], 3), round(e['tokens_per_s']), 'tok/s')
    else: print(e)"
  tail -3 $OUT/train-$preset.err
done
if [ -n "${BENCH:-1}" ]; then
  python3 -m core bench --presets ${BENCH_PRESETS:-old-settings,modern-bf16,8gb,t4-fp16,t4-fp32} --steps ${STEPS:-30} \
    --out $OUT/bench.json 2> $OUT/bench.err
  tail -5 $OUT/bench.err
fi
