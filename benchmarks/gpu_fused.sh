#!/usr/bin/env bash
# Fused linear cross-entropy (Liger) vs the chunked LM-head loss, and cuDNN SDPA off: numerics test, then ABAB bench.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pytest -q tests/test_fused_ce.py -p no:cacheprovider 2>&1 | tail -5 | tee $OUT/test-fused-ce.txt
python3 -m core bench --presets ${PRESETS:-modern-bf16:cudnn_attention=false,modern-bf16:cudnn_attention=false+fused_ce=true,modern-bf16:cudnn_attention=false,modern-bf16:cudnn_attention=false+fused_ce=true,8gb:cudnn_attention=false,8gb:cudnn_attention=false+fused_ce=true} \
  --steps ${STEPS:-24} --out $OUT/fused.json 2> $OUT/fused.err | tee $OUT/fused.txt
grep '^{' $OUT/fused.err > $OUT/fused-rows.jsonl
