"""When a run diverges, and what it is told: the one rule the step callback (core/train/callbacks.py), the end of
the run (core/train/engine.py) and the after-run check's verdict (core/train/learncheck.py) ask.

A run diverges when its updates wreck the weights instead of fitting them: a learning rate too high for LoRA, or an
fp16 forward that overflows (a T4's fp16 is where it happens first). The signs, and what each does:
- a non-finite loss or gradient norm: the weights are NaN from that step on (the clipping multiplies every gradient
  by a NaN norm). The run stops at once (on a GPU the step is read one step late), saves neither an adapter nor a
  checkpoint, and drops the checkpoints taken from that step on; the ones before it are kept to resume from.
  fp16's loss scaler is the exception for the gradient norm alone: see FP16_SKIPS.
- a loss that climbs far above where it started (CLIMB times and CLIMB_NATS above the first step's): said at once,
  the run goes on (a spike can settle), and it ends "diverged" if its last loss or its eval loss is still that high.
- an adapter that answers the held-out rows worse than the base model (WORSE_SIMILARITY): the weights moved away
  from the answers.
A diverged run is never advised a higher learning rate: `advice` says to lower it (and fp32 on a T4 for fp16).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass

# x the first step's loss. A healthy LoRA run's step losses stay within ~2x of its first while it learns (the first
# batch can be an easy one); the lr 0.1 run that prompted this rule went 1.50 -> 2.65 -> 6.13 -> 22.6 -> 56.0.
CLIMB = 3.0
# ... and this many nats a token above it: a small first loss (0.3) tripled is still a plausible batch; +2 nats is
# 7x the perplexity, which no batch of the same export explains.
CLIMB_NATS = 2.0
# fp16's loss scaler starts at 2^16 and halves at each step whose gradients overflow, skipping that step (the
# weights stay as they were): a few non-finite gradient norms at the start of an fp16 run are normal. 20 in a row
# is past what halving from 2^16 needs (16): the gradients themselves are inf.
FP16_SKIPS = 20
# similarity (0..1) lost against the base model's answers: the check's rows are few, a few hundredths is noise; a
# tenth lost is answers that got worse (the lr 0.1 run: 0.18 -> 0.03, and 0.13 -> 0.00).
WORSE_SIMILARITY = 0.1


@dataclass(frozen=True)
class Divergence:
    step: int
    why: str  # "the loss became nan", "the loss climbed from 1.50 to 6.13 (4.1x)"
    fatal: bool  # non-finite: the weights are NaN, the run stops and saves no adapter


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


class Watch:
    """Each step's loss and gradient norm, as the callback reads them; reports each kind of divergence once."""

    def __init__(self, fp16_scaler: bool = False):
        self.fp16_scaler = fp16_scaler
        self.start: float | None = None  # the first finite loss read
        self.skips = 0  # non-finite gradient norms in a row (fp16)
        self.fatal: Divergence | None = None
        self.climb: Divergence | None = None

    def step(self, step: int, loss: float, grad_norm: float | None) -> Divergence | None:
        """The divergence this step shows first (None: nothing new)."""
        if self.fatal is not None:
            return None
        if not _finite(loss):
            self.fatal = Divergence(step, f"the loss became {loss}", True)
            return self.fatal
        if not _finite(grad_norm):
            self.skips += 1
            if not self.fp16_scaler or self.skips >= FP16_SKIPS:
                more = f" ({self.skips} steps in a row, past fp16's loss scaling)" if self.fp16_scaler else ""
                self.fatal = Divergence(step, f"the gradient norm became {grad_norm}{more}", True)
                return self.fatal
        else:
            self.skips = 0
        if self.start is None:
            self.start = loss
            return None
        if self.climb is None and self.climbed(loss):
            self.climb = Divergence(step, f"the loss climbed from {self.start:.2f} to {loss:.2f} "
                                          f"({loss / max(self.start, 1e-9):.1f}x)", False)
            return self.climb
        return None

    def climbed(self, loss: float | None) -> bool:
        """Whether `loss` is far above the run's start (CLIMB, CLIMB_NATS)."""
        return (loss is not None and self.start is not None
                and (not math.isfinite(loss) or (loss > CLIMB * self.start and loss > self.start + CLIMB_NATS)))

    def at_end(self, last_loss: float | None, eval_loss: float | None) -> str | None:
        """Why the run ended diverged (None: it did not): NaN weights, or a loss still far above its start."""
        if self.fatal is not None:
            return self.fatal.why
        if self.climb is None:
            return None
        still = [f"{name} loss {value:.2f}" for name, value in (("last", last_loss), ("eval", eval_loss))
                 if self.climbed(value)]
        return f"{self.climb.why} at step {self.climb.step}; {' and '.join(still)} at the end" if still else None


def adapter_worse(base_exact: float, adapter_exact: float, base_sim: float, adapter_sim: float) -> bool:
    """The adapter answers the held-out rows worse than the base model: fewer exact, and a tenth less similar."""
    return adapter_exact <= base_exact and adapter_sim < base_sim - WORSE_SIMILARITY


def advice(lr: float | None, autocast: str = "no") -> str:
    """What to do about a diverged run: a lower learning rate (a tenth), and fp32 where fp16 overflowed."""
    lower = f"lower the learning rate (--lr {lr / 10:g}, a tenth)" if lr else "lower the learning rate (--lr)"
    return lower + (", or train in fp32 on a T4 (--preset t4-fp32)" if autocast == "fp16" else "")


def drop_checkpoints_from(folder, step: int) -> list:
    """Remove the checkpoints of `folder` taken at `step` or later (their weights came after a NaN update); the
    earlier ones stay. Returns the steps removed."""
    from pathlib import Path

    from core.runs.output import checkpoint_step

    gone = []
    folder = Path(folder)
    for ckpt in (folder.iterdir() if folder.is_dir() else ()):
        try:
            n = checkpoint_step(ckpt)
        except ValueError:
            continue
        if n >= step:
            shutil.rmtree(ckpt, ignore_errors=True)
            gone.append(n)
    return sorted(gone)


def end_of_nan_run(found: Divergence, dirs, record: dict, lr: float | None, autocast: str = "no"):
    """A run stopped for NaN weights: no adapter. Its checkpoints from the bad step on are dropped, the earlier ones
    stay in the unfinished folder with run.json (status "diverged", why), and the error says what to do next."""
    import json

    from core.errors import TrainerError
    from core.runs.output import latest_checkpoint, write_atomic
    from core.train import distributed

    if distributed.is_main():
        drop_checkpoints_from(dirs.checkpoints, found.step)
        record.update(status="diverged", diverged={"step": found.step, "why": found.why})
        write_atomic(dirs.work / "run.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    ckpt = latest_checkpoint(dirs.checkpoints)
    todo = advice(lr, autocast)
    if ckpt is not None:
        rate = f" --lr {lr / 10:g}" if lr else ""
        again = (f"{todo}, then resume from the last good checkpoint ({ckpt.name}): genaptitude-trainer train "
                 f"--resume{rate} --output {dirs.output} ...")
    else:
        again = f"{todo}, then train again (--overwrite --output {dirs.output}: no checkpoint was taken before it)"
    return TrainerError(f"the run diverged at step {found.step}: {found.why}; no adapter was saved (its weights "
                        "are NaN)", hint=again)


def after_check(why: str | None, scored) -> str | None:
    """Why the run ended diverged, the after-run check (a HeldOutScored, or None) heard: its loss's reason, else an
    adapter that answers the held-out rows worse than the base model."""
    if why or scored is None or not adapter_worse(scored.base_exact, scored.adapter_exact, scored.base_similarity,
                                                  scored.adapter_similarity):
        return why
    return (f"the adapter answers the held-out rows worse than the base model (similarity "
            f"{scored.base_similarity:.2f} → {scored.adapter_similarity:.2f})")
