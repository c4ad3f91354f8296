#!/usr/bin/env bash
# Issue 12 on a box with 2 GPUs (nvidia-h200-x2), as a user there runs it: which GPU each command takes and why,
# shown by the tool and checked against nvidia-smi's list of compute processes. Needs .whl as the other scripts.
#   PARTS="doctor train eval bench tui busy ddp" (default: all but ddp; each part is about a minute) STEPS=6
# Every command's output comes back in $OUT/multibox.tgz (unpack it into benchmarks/results/h200x2-multibox/).
set -uo pipefail
source benchmarks/device_env.sh || exit 1
# A device call brings back at most 8 files: everything is written to /tmp/multibox, then packed into one archive.
BACK=$OUT; OUT=/tmp/multibox; mkdir -p $OUT
trap 'tar czf $BACK/multibox.tgz -C $OUT . ; cp $OUT/commands.txt $OUT/doctor.out $BACK/ 2>/dev/null' EXIT
export NCCL_NVLS_ENABLE=0
PARTS=" ${PARTS:-doctor train eval bench tui busy} "
STEPS=${STEPS:-6}
has() { [[ "$PARTS" == *" $1 "* ]]; }
nvidia-smi --query-gpu=index,pci.bus_id,name,memory.used,memory.total --format=csv,noheader | tee $OUT/gpus.csv
python3 benchmarks/random_model.py --arch qwen2.5-1.5b --out /tmp/qwen-random >/dev/null 2>&1 || exit 1
TRAIN="python3 -m core train --model /tmp/qwen-random --dataset dataset.jsonl --preset modern-bf16 --max-steps $STEPS"

# Run a command with its output in $OUT/NAME.out/.err; meanwhile sample nvidia-smi (its compute processes and each
# GPU's used memory). Prints the tool's own lines about GPUs, the exit code, and which GPUs nvidia-smi saw it use.
run() {
  local name=$1; shift
  echo "== $name: $*"; echo "$name: $*" >> $OUT/commands.txt
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits > $OUT/$name.mem
  "$@" > $OUT/$name.out 2> $OUT/$name.err & local pid=$!
  while kill -0 $pid 2>/dev/null; do
    nvidia-smi --query-compute-apps=pid,gpu_bus_id,used_memory --format=csv,noheader >> $OUT/$name.apps 2>/dev/null
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits >> $OUT/$name.mem 2>/dev/null
    sleep 2
  done
  wait $pid; local code=$?
  grep -hE "GPU|^error|^finished|^preset|^(old-settings|modern-bf16) " $OUT/$name.out $OUT/$name.err \
    | grep -v '"event": "step"' | head -12
  echo "exit $code; nvidia-smi: $(python3 benchmarks/gpus_seen.py $OUT/$name.apps $OUT/$name.mem $OUT/gpus.csv $HOG_PID)"
}
HOG_PID=""

if has doctor; then
  run doctor python3 -m core doctor; cat $OUT/doctor.out
fi
if has train; then
  run train-default $TRAIN --output /tmp/mb-default          # no --gpus: one GPU, the freest (was: DataParallel error)
  run train-gpu-ids-1 $TRAIN --gpu-ids 1 --output /tmp/mb-gpu1  # exactly GPU 1
fi
if has eval; then
  [ -d /tmp/mb-gpu1 ] || $TRAIN --gpu-ids 1 --output /tmp/mb-gpu1 > /dev/null 2>&1
  run evaluate python3 -m core evaluate --adapter /tmp/mb-gpu1 --dataset dataset.jsonl --limit 4 --max-new-tokens 16
fi
if has bench; then
  ls -d /tmp/arch-* /tmp/bench-* 2>/dev/null | wc -l > $OUT/tmp-before.txt
  run bench python3 -m core bench --presets modern-bf16,old-settings --steps 12 --out $OUT/bench.json
  echo "temporary model folders left in /tmp: before $(cat $OUT/tmp-before.txt), after $(ls -d /tmp/arch-* /tmp/bench-* 2>/dev/null | wc -l)"
fi
if has tui; then
  run tui-gpu-1 python3 benchmarks/tui_gpu_pick.py --gpu 1 --model /tmp/qwen-random --steps $STEPS \
    --output /tmp/mb-tui-gpu1 --screen $OUT/tui-preset-tab.txt
  cat $OUT/tui-gpu-1.out
fi
if has busy; then
  # Another user's job holds 60 GiB on GPU 0; a one-GPU run must take GPU 1 by itself, and GPU 0 is warned about.
  CUDA_VISIBLE_DEVICES=0 python3 -c "
import time, torch
x = torch.empty(60 * 1024 ** 3, dtype=torch.uint8, device='cuda')
print('holding', flush=True); time.sleep(900)" > $OUT/hog.out 2>&1 & HOG_PID=$!
  for _ in $(seq 60); do grep -q holding $OUT/hog.out && break; sleep 1; done
  nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader | tee $OUT/busy-gpus.csv
  run busy-doctor python3 -m core doctor --gpu-ids 0; grep -E "^GPU|run uses|warning" $OUT/busy-doctor.out
  run busy-train-default $TRAIN --output /tmp/mb-busy       # must say GPU 1 and run there
  kill $HOG_PID; wait $HOG_PID 2>/dev/null; HOG_PID=""
fi
if has ddp; then
  run train-gpus-2 $TRAIN --gpus 2 --output /tmp/mb-ddp
fi
