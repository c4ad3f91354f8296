"""Build a random-weight model of a real architecture with a real tokenizer, for offline GPU runs.

    python benchmarks/random_model.py --arch qwen2.5-1.5b --tokenizer DIR --out /tmp/qwen-random
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.train.bench import build_arch  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--arch", default="qwen2.5-1.5b")
p.add_argument("--tokenizer", default=None,
               help="folder with tokenizer.json / tokenizer_config.json (default: a BPE trained on dataset.jsonl)")
p.add_argument("--out", required=True)
a = p.parse_args()
out = Path(a.out)
build_arch(a.arch, out)
if a.tokenizer:
    for f in Path(a.tokenizer).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "vocab", "merges")):
            shutil.copy(f, out / f.name)
else:  # no tokenizer files to carry: a ChatML byte-level BPE learnt from the bundled export (as the tests do)
    from tests.tinymodels import build_tokenizer, dataset_texts

    build_tokenizer(dataset_texts(), vocab_size=8000).save_pretrained(str(out))
print(out)
