"""Loss on answer tokens only, without materialising logits for the tokens that carry no loss.

An SFT row of a GenAptitude export is mostly prompt (a serialised JSON element) and a one-sentence answer.
The LM head (49k entries for SmolLM2, 152k for Qwen2.5) is applied only at positions whose next token is
trained, so the logits tensor shrinks by the prompt/answer ratio (often 5-10x), in compute and in memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def answer_only_loss(model, inputs: dict, num_items_in_batch=None, chunk: int = 4096) -> torch.Tensor:
    """Sum of token cross-entropies over trained positions, divided by `num_items_in_batch` (or their count)."""
    labels = inputs["labels"]
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = causal_lm.get_decoder()
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}  # padding-free batches carry cu_seq_lens etc.
    hidden = decoder(**kwargs, use_cache=False).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    h = hidden[:, :-1][keep]
    y = target[keep]
    head = causal_lm.get_output_embeddings()
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], chunk):  # bounded logits memory for long answers / big vocabularies
        logits = head(h[i:i + chunk]).float()
        total = total + F.cross_entropy(logits, y[i:i + chunk], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1)
    if isinstance(count, torch.Tensor):
        count = count.to(total.device)
    return total / count
