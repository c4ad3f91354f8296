#!/usr/bin/env bash
# Second exploration on the H100: addmm LoRA forward, Liger kernels, bf16 LoRA weights (one bench run).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -c "import triton, liger_kernel; print('triton', triton.__version__)"
M=modern-bf16:batch_tokens=32768+batch_size=256+mask_padding=false
python3 -m core bench --steps 14 --out $OUT/explore-c.json --presets \
$M+lora_dtype=bfloat16+fast_lora=false,$M+fast_lora=true,$M+fast_lora=true+lora_dtype=bfloat16,\
$M+liger=true,$M+liger=true+lora_dtype=bfloat16,\
modern-bf16:batch_tokens=65536+batch_size=512+mask_padding=false+liger=true \
  2> $OUT/explore-c.err | tee $OUT/explore-c.txt
GENAPTITUDE_TRAINER_PROFILE=$OUT/profile python3 -m core bench --steps 12 --out $OUT/profile.json --presets \
  $M+liger=true 2> $OUT/profile.err >/dev/null
head -c 6000 $OUT/profile/*.txt
