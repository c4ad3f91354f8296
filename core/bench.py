"""Where the peer harness (../shared/peers/unsloth: build_model.py, unsloth_bench.py) and older scripts find the
bench's pieces: `from core import bench`, `core.bench.synthetic_rows`. The bench itself is core.train.bench."""
from core.train.bench import (ARCH_CONFIGS, _dense_params, _id_tokenizer, build_arch, matmul_tflops, measure,
                              run_bench, synthetic_rows)

__all__ = ["ARCH_CONFIGS", "_dense_params", "_id_tokenizer", "build_arch", "matmul_tflops", "measure", "run_bench",
           "synthetic_rows"]
