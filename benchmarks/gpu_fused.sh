#!/usr/bin/env bash
# Fused linear cross-entropy (Liger) vs the chunked LM-head loss, and cuDNN SDPA off: numerics test, then ABAB bench.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
python3 -m pytest -q tests/test_fused_ce.py -p no:cacheprovider 2>&1 | tail -5 | tee $OUT/test-fused-ce.txt
python3 -m core bench --presets ${PRESETS:-modern-bf16:cudnn_attention=false,modern-bf16:cudnn_attention=false+fused_ce=true,modern-bf16:cudnn_attention=false,modern-bf16:cudnn_attention=false+fused_ce=true,8gb:cudnn_attention=false,8gb:cudnn_attention=false+fused_ce=true} \
  --steps ${STEPS:-24} --out $OUT/fused.json 2> $OUT/fused.err | tee $OUT/fused.txt
grep '^{' $OUT/fused.err > $OUT/fused-rows.jsonl
