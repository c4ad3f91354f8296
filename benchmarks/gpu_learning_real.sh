#!/usr/bin/env bash
# Does every GPU preset teach a real model (issue 18)? The bundled SmolLM2-135M-Instruct GGUF (98 MB) is over a
# call's transfer limit: split it here (`split -b 50000000 $(find .venv -name 'SmolLM2*.gguf') .gguf/part.`, with
# /.gguf/ in .git/info/exclude), carry .gguf/part.aa, then .gguf/part.ab in back-to-back calls that append them
# (`mkdir -p /tmp/smollm2 && cat .gguf/part.* >> /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`), then run this
# script carrying .whl. RUNS, PARALLEL (all at once) and LANES (e.g. 0,1: a run per GPU) pick what runs; the table
# lands in $OUT/learning-real.md, rewritten as each run ends, so LIMIT_S (520 s, under a call's 600) keeps what ended.
set -uo pipefail
source benchmarks/device_env.sh || exit 1
GGUF=${GGUF:-/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
ls -la "$GGUF" || exit 1
RUNS=${RUNS:-"modern-bf16 8gb t4-fp16 t4-fp32"}
mkdir -p /tmp/learn-out
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} timeout ${LIMIT_S:-520} python3 benchmarks/learning_real.py --model "$GGUF" --runs $RUNS ${PARALLEL:+--parallel} ${LANES:+--lanes $LANES} \
  --out /tmp/learn-out
cp /tmp/learn-out/learning-real.md /tmp/learn-out/learning-real.json "$OUT"/
tar czf "$OUT/learning-real-logs.tar.gz" -C /tmp/learn-out .
