"""The VRAM estimate shown before a run stays within 15% of the peaks measured on an H100 (benchmarks/results)."""
import json
from dataclasses import fields, replace

import pytest

from core.estimate import estimate_vram
from core.presets import TrainConfig, config_for
from tests.conftest import ROOT

MEASURED = [r for f in ("h100-bench.json", "h100-bench-2048.json")
            for r in json.loads((ROOT / "benchmarks" / "results" / f).read_text())["results"]
            if r["preset"] != "old-settings" and "error" not in r]


@pytest.mark.parametrize("row", MEASURED, ids=lambda r: f"{r['preset']}@{r['config']['max_length']}")
def test_estimate_within_15_percent_of_measured_peak(row):
    name = row["preset"].split(":")[0]
    names = {f.name for f in fields(TrainConfig)}
    cfg = replace(config_for(name), **{k: v for k, v in row["config"].items() if k in names})
    est = estimate_vram(cfg).total_gib
    assert abs(est / row["peak_vram_gib"] - 1) <= 0.15, (est, row["peak_vram_gib"])


def test_estimate_grows_with_batch_and_length_and_cpu_has_no_cuda_part():
    base = config_for("modern-bf16")
    assert estimate_vram(replace(base, batch_tokens=65536)).total_gib > estimate_vram(base).total_gib
    assert estimate_vram(replace(base, batch_tokens=0, batch_size=32)).total_gib > \
        estimate_vram(replace(base, batch_tokens=0, batch_size=16)).total_gib
    assert estimate_vram(replace(base, max_length=65536)).total_gib > estimate_vram(base).total_gib  # one row > budget
    assert "cuda workspace" not in estimate_vram(config_for("cpu")).parts


def test_a_large_fused_loss_chunk_is_counted_and_the_presets_chunks_change_nothing():
    """The fused cross-entropy holds one chunk of 16-bit logits: the presets' chunks (256, 4096) fit in what the
    estimate kept for the loss before; a chunk of 16k tokens does not, and is counted."""
    modern = config_for("modern-bf16")
    base = estimate_vram(modern).parts["logits"]
    assert estimate_vram(replace(modern, fused_ce_chunk=256)).parts["logits"] == base
    assert estimate_vram(replace(modern, fused_ce_chunk=16384)).parts["logits"] > 3 * base
    assert estimate_vram(replace(modern, fused_ce_chunk=16384, fused_ce=False)).parts["logits"] == base
