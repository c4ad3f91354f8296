"""Which GPUs a command used, from nvidia-smi samples taken while it ran (benchmarks/gpu_multibox.sh).

    python3 benchmarks/gpus_seen.py NAME.apps NAME.mem gpus.csv [PID_TO_IGNORE]

NAME.apps: `nvidia-smi --query-compute-apps=pid,gpu_bus_id,used_memory --format=csv,noheader` lines (empty in a
container that cannot see the processes); NAME.mem: `--query-gpu=index,memory.used --format=csv,noheader,nounits`
lines (MiB); gpus.csv: index, pci.bus_id, ... Prints e.g. "processes on GPU 1; memory rose on GPU 1 (+9.6 GiB)".
"""
import sys
from pathlib import Path


def lines(path: str) -> list[list[str]]:
    p = Path(path)
    return [[c.strip() for c in l.split(",")] for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


apps, mem, gpus = sys.argv[1:4]
ignore = sys.argv[4] if len(sys.argv) > 4 else ""
index = {row[1].lower()[-12:]: row[0] for row in lines(gpus)}
seen = sorted({index.get(row[1].lower()[-12:], row[1]) for row in lines(apps) if len(row) > 1 and row[0] != ignore})
first: dict[str, float] = {}
peak: dict[str, float] = {}
for row in lines(mem):
    if len(row) < 2 or not row[1].replace(".", "").isdigit():
        continue
    first.setdefault(row[0], float(row[1]))
    peak[row[0]] = max(peak.get(row[0], 0.0), float(row[1]))
rose = [f"GPU {i} (+{(peak[i] - first[i]) / 1024:.1f} GiB)" for i in sorted(peak) if peak[i] - first[i] > 1024]
print(f"processes on GPU {', '.join(seen) if seen else '? (none listed)'}; "
      f"memory rose on {', '.join(rose) if rose else 'no GPU by more than 1 GiB'}")
