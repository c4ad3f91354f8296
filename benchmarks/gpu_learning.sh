#!/usr/bin/env bash
# Does the fast GPU path learn what the reference path learns? modern-bf16 as shipped (addmm LoRA with its one-node
# backward, Liger, fused cross-entropy, no padding mask, flash SDPA) vs the same run with every speed lever off (PEFT forward,
# fp32 LoRA, library loss over all logits, attention mask, cuDNN SDPA), same data, batches and seed: loss curves.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1
common="--dataset dataset.jsonl --model /tmp/qwen-random --preset modern-bf16 --max-steps 40 --batch-tokens 4096 --eval-fraction 0.05 --eval-every 10 --score-rows 0 --json"
python3 -m core train $common --output /tmp/fast > $OUT/learning-fast.jsonl 2> $OUT/fast.err; echo "fast rc=$?"
python3 -c "
import json, sys
from core.presets import config_for
c = config_for('modern-bf16', fast_lora=False, fused_lora_grad=False, fused_blocks=False, torch_rms_norm=False, fused_rope=False,
               lora_dtype='float32', liger=False,
               fused_ce=False, fast_loss=False, mask_padding=True, cudnn_attention=True)
json.dump(c.to_dict(), open('/tmp/reference.json', 'w'))"
python3 -m core train $common --config-json /tmp/reference.json --output /tmp/ref > $OUT/learning-reference.jsonl 2> $OUT/ref.err; echo "ref rc=$?"
tail -3 $OUT/ref.err
python3 - <<'PY'
import json, os
out = os.environ["OUT"]
def load(name):
    ev = [json.loads(l) for l in open(f"{out}/learning-{name}.jsonl") if l.startswith("{")]
    return ({e["step"]: e["loss"] for e in ev if e["event"] == "step"}, {e["step"]: e["eval_loss"] for e in ev if e["event"] == "eval"})
(fs, fe), (rs, re_) = load("fast"), load("reference")
for s in sorted(fs):
    print(s, round(fs[s], 4), round(rs.get(s, float("nan")), 4), "eval", fe.get(s), re_.get(s))
PY
