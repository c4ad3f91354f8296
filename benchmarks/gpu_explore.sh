#!/usr/bin/env bash
# Exploration on the lent H100: which levers move tokens/s (one bench run, variants side by side).
# STAGE=a: the batching/mask/LoRA-dtype variants; STAGE=b: profiles and the 8gb/T4 variants.
set -uo pipefail
if [ ! -f /tmp/site/.ok ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.ok || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
M=modern-bf16
if [ "${STAGE:-a}" = a ]; then
  python3 -m core bench --steps 16 --out $OUT/explore-a.json --presets \
old-settings,$M,$M:mask_padding=false,\
$M:batch_tokens=16384+batch_size=256+mask_padding=false,\
$M:batch_tokens=32768+batch_size=256+mask_padding=false,\
$M:batch_tokens=32768+batch_size=256+mask_padding=false+lora_dtype=bfloat16,\
$M:batch_tokens=65536+batch_size=512+mask_padding=false \
    2> $OUT/explore-a.err | tee $OUT/explore-a.txt
else
  GENAPTITUDE_TRAINER_PROFILE=$OUT/profile python3 -m core bench --steps 12 --out $OUT/profile.json --presets \
$M:batch_tokens=32768+batch_size=256+mask_padding=false+lora_dtype=bfloat16 2> $OUT/profile.err | tee $OUT/profile.txt
  python3 -m core bench --steps 14 --out $OUT/explore-b.json --presets \
t4-fp32,t4-fp16:batch_tokens=16384+batch_size=256+mask_padding=false,\
$M:batch_tokens=32768+batch_size=256+mask_padding=false+lora_dtype=bfloat16+pad_to_multiple=64,\
$M:batch_tokens=65536+batch_size=512+mask_padding=false+lora_dtype=bfloat16 \
    2> $OUT/explore-b.err | tee $OUT/explore-b.txt
  python3 -m core bench --steps 10 --seq-len 1024-2048 --out $OUT/explore-8gb.json --presets \
8gb:batch_tokens=16384+batch_size=64+grad_accum=1+mask_padding=false+lora_dtype=bfloat16 \
    2> $OUT/explore-8gb.err | tee $OUT/explore-8gb.txt
fi
