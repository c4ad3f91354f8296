"""pyproject's version ranges are true: the lowest-versions CI job (.ci/lowest) installs exactly its floors, and the
library-loss path survives the transformers/trl pairs that broke it."""
from __future__ import annotations

import math
import re

import pytest

from tests.tinymodels import ROOT

PINNED = ("transformers", "trl", "peft", "accelerate")


def floors() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return {m[1].lower(): m[2] for m in re.finditer(r'"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)[,<"]', text)}


def test_the_lowest_versions_job_installs_pyprojects_floors():
    lowest = dict(line.split("==") for line in (ROOT / ".ci" / "lowest-constraints.txt").read_text().split()
                  if "==" in line)
    from packaging.version import Version

    have = floors()
    assert {n: Version(lowest[n]) for n in PINNED} == {n: Version(have[n]) for n in PINNED}
    assert lowest["torch"] == "2.13.0"  # the Makefile's CPU build: seconds to install, no CUDA download


@pytest.mark.slow
@pytest.mark.parametrize("fast_loss", [False, True])
def test_loss_paths_train_where_trl_takes_transformers_for_older_than_5_19(fast_loss, tiny_model_dir, small_dataset,
                                                                          tmp_path, monkeypatch):
    """trl (1.16) records `loss_is_scaled_for_ga = True` on transformers < 5.19 by putting a string into
    `compute_loss_func`, which SFTTrainer.compute_loss then called: `bench --presets old-settings` failed with
    "'str' object is not callable". trl reads transformers.__version__ when the trainer is built, so this replays
    that pair here with accumulation 2 (where the scaling matters)."""
    import transformers

    from core import events as ev
    from core.presets import config_for
    from core.train.engine import train

    monkeypatch.setattr(transformers, "__version__", "5.17.0")
    events = []
    cfg = config_for("cpu", model=str(tiny_model_dir), max_steps=2, grad_accum=2, eval_fraction=0.1,
                     fast_loss=fast_loss)
    train(cfg, str(small_dataset), str(tmp_path / "out"), on_event=events.append)
    done = next(e for e in events if isinstance(e, ev.Finished))
    assert done.steps == 2 and math.isfinite(done.train_loss) and math.isfinite(done.eval_loss)
