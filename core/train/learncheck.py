"""Did this run learn? Right after training, the run's own held-out rows are answered greedily by the base model
(adapter disabled) and by the adapter, from the weights already in memory, within a row and time budget.

A run that "finished" can still have taught nothing (the old GPU presets scored exact match 0.00 after a whole
epoch): the verdict says so in words, with the likely way out, instead of leaving the user to find out in
GenAptitude.
"""
from __future__ import annotations

import contextlib
import threading
import time

from core.events import HeldOutScored

LEARNED_EXACT = 0.8  # an adapter that answers 80% of held-out rows exactly has learned the export's answers
LEARNED_SIMILARITY = 0.9  # ... or whose answers are 90% similar to the references (long free-text answers)
BASE_KNOWS = 0.9  # the base model's answers are already this similar: there was little to learn
PARTLY_GAIN = 0.2  # similarity gained over the base: learning, but not there yet


def verdict(base_exact: float, adapter_exact: float, base_sim: float, adapter_sim: float,
            epochs: float = 1.0, lr: float | None = None, diverged: str | None = None,
            autocast: str = "no") -> tuple[str, str]:
    """(verdict, advice) from the scores and whether training diverged (`diverged`: why, from
    core.train.divergence); the one rule every caller (CLI, TUI, run.json) shows. The words never contradict the
    numbers beside them: "learned" needs exact answers gained over the base (else similar answers are "partly"), and a
    run that diverged, or an adapter worse than the base, is "diverged", never advised a higher learning rate."""
    from core.train import divergence

    if diverged or divergence.adapter_worse(base_exact, adapter_exact, base_sim, adapter_sim):
        why = diverged or "the adapter answers worse than the base model"
        return "diverged", f"the run diverged ({why}): {divergence.advice(lr, autocast)}"
    if base_sim >= BASE_KNOWS and adapter_sim - base_sim < 0.05:
        return "base knows", "the base model already answers these rows closely; the adapter changes little"
    more = f"--epochs {max(2, round(epochs * 3))}"
    if adapter_exact >= LEARNED_EXACT or (adapter_sim >= LEARNED_SIMILARITY and adapter_exact > base_exact):
        return "learned", ""
    if adapter_sim >= LEARNED_SIMILARITY:
        return "partly", (f"its answers are close to the references (similarity {adapter_sim:.2f}) but no more of "
                          f"them are exact than the base model's: train longer ({more})")
    higher = f" or a higher learning rate (--lr {lr * 2:g})" if lr else " or a higher learning rate (--lr)"
    if adapter_sim - base_sim >= PARTLY_GAIN:
        return "partly", f"it is learning but not there yet: train longer ({more}){higher}"
    return "not learned", (f"the adapter barely beats the base model: it did not learn the answers; try more "
                           f"epochs ({more}){higher}, and check the data preview (t)")


def score_run(tok, model, examples, *, rows: int, seconds: float, epochs: float, lr: float, fitting,
              stop_event: threading.Event | None = None, max_new_tokens: int = 96,
              batch_size: int = 8, autocast: str = "no", diverged: str | None = None) -> HeldOutScored | None:
    """Answer up to `rows` held-out chat rows with the base weights and the adapter (a peft model), batch by
    batch, until `seconds` have passed or `stop_event` is set; None when nothing was answered. Prompts are cut
    as the run cut its rows (`fitting`: a core.adapter.evaluate.Fitting), once for both sides. `autocast` is the run's
    ("fp16"/"bf16"/"no"): the answers come from the same mixed-precision forward the run trained with. `diverged`:
    why the run's loss says it diverged (core.train.divergence), for the verdict."""
    from core.adapter.evaluate import generate_replies, prompt_of, score

    chat = [e for e in examples if e.text is None][:rows]
    if not chat or seconds <= 0:
        return None
    start = time.perf_counter()
    was_training = model.training
    use_cache = getattr(model.config, "use_cache", None)
    model.eval()
    model.config.use_cache = True  # training turned the KV cache off; generation wants it
    done, base_answers, tuned_answers, base_cut, tuned_cut = [], [], [], [], []
    try:
        with _autocast(model, autocast):
            for i in range(0, len(chat), batch_size):
                left = seconds - (time.perf_counter() - start)
                if (stop_event is not None and stop_event.is_set()) or left <= 0:
                    break
                batch = chat[i:i + batch_size]
                prompts = [prompt_of(tok, e, fitting) for e in batch]
                with model.disable_adapter():  # each side gets half of the time left: the check stays bounded
                    base_answers += generate_replies(tok, model, prompts, max_new_tokens, batch_size,
                                                     max_time=left / 2, cut=base_cut)
                left = seconds - (time.perf_counter() - start)
                tuned_answers += generate_replies(tok, model, prompts, max_new_tokens, batch_size,
                                                  max_time=max(left, 1), cut=tuned_cut)
                done += batch
    finally:
        model.config.use_cache = use_cache
        model.train(was_training)
    # An answer the time limit stopped is unfinished, not wrong: on a busy CPU it scored an adapter with eval loss
    # 0.003 "partly" (similarity 0.40, every answer cut). Only rows both sides answered whole are scored.
    whole = [i for i in range(len(done)) if not base_cut[i] and not tuned_cut[i]]
    if not whole:
        return None
    done, base_answers, tuned_answers = ([xs[i] for i in whole] for xs in (done, base_answers, tuned_answers))
    base, tuned = score("base", done, base_answers, None), score("adapter", done, tuned_answers, None)
    v, advice = verdict(base.exact_match, tuned.exact_match, base.similarity, tuned.similarity, epochs, lr,
                        diverged, autocast)
    return HeldOutScored(rows=len(done), base_exact=base.exact_match, adapter_exact=tuned.exact_match,
                         base_similarity=base.similarity, adapter_similarity=tuned.similarity,
                         seconds=round(time.perf_counter() - start, 1), verdict=v, advice=advice)


def _autocast(model, mode: str):
    """The run's mixed precision around generation (a no-op for "no"; bf16 only on a CPU)."""
    import torch

    device = next(model.parameters()).device
    if mode == "no" or (device.type == "cpu" and mode != "bf16") or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if mode == "fp16" else torch.bfloat16)


def rows_text(n: int) -> str:
    """ "1 row", "8 rows": how the check's row count reads everywhere."""
    return f"{n} row" if n == 1 else f"{n} rows"


def describe(s: HeldOutScored) -> str:
    """One line for the CLI (the TUI's finish panel says the same, styled: tui/widgets/training.held_out_text)."""
    return (f"held-out check ({rows_text(s.rows)}, {s.seconds:.0f}s): exact match base {s.base_exact:.2f} → adapter "
            f"{s.adapter_exact:.2f}, similarity {s.base_similarity:.2f} → {s.adapter_similarity:.2f}: {s.verdict}")
