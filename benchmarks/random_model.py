"""Build a random-weight model of a real architecture with a real tokenizer, for offline GPU runs.

    python benchmarks/random_model.py --arch qwen2.5-1.5b --tokenizer DIR --out /tmp/qwen-random
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.bench import build_arch  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--arch", default="qwen2.5-1.5b")
p.add_argument("--tokenizer", required=True, help="folder with tokenizer.json / tokenizer_config.json")
p.add_argument("--out", required=True)
a = p.parse_args()
out = Path(a.out)
build_arch(a.arch, out)
for f in Path(a.tokenizer).iterdir():
    if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "vocab", "merges")):
        shutil.copy(f, out / f.name)
print(out)
