"""Loss on answer tokens only, without materialising logits for the tokens that carry no loss.

An SFT row of a GenAptitude export is mostly prompt (a serialised JSON element) and a one-sentence answer.
The LM head (49k entries for SmolLM2, 152k for Qwen2.5) is applied only at positions whose next token is
trained, in chunks that are recomputed in backward (activation checkpointing), so at most one chunk of
logits is alive at a time whatever the batch: memory no longer grows with vocabulary × tokens.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK = 1024  # trained positions per LM-head chunk: 1024 × 152k fp32 logits ≈ 0.6 GB


def _chunk_ce(head, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(h).float(), y, reduction="sum")


def loss_positions(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices (into batch × length) of the positions whose next token is trained. The collator computes them
    on the CPU, so the GPU never has to report how many there are (a boolean index would stall every step)."""
    nxt = torch.full_like(labels, -100)
    nxt[:, :-1] = labels[:, 1:]
    return (nxt.reshape(-1) != -100).nonzero().squeeze(1)


def answer_only_loss(model, inputs: dict, num_items_in_batch=None, chunk: int = CHUNK,
                     fused_chunk: int = 0) -> torch.Tensor:
    """Sum of token cross-entropies over trained positions, divided by `num_items_in_batch` (or their count).
    `fused_chunk` > 0: while training on CUDA, the fused linear cross-entropy (core/train/kernels/cross_entropy.py: same
    bf16 logits, fp32 softmax, each chunk's gradient made in the forward pass, no wait for the GPU) in chunks of at
    most that many tokens."""
    labels = inputs["labels"]
    ddp = model if hasattr(model, "module") and hasattr(model, "no_sync") else None  # DistributedDataParallel
    inner = ddp.module if ddp is not None else model
    causal_lm = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    decoder = causal_lm.get_decoder()
    kwargs = {k: v for k, v in inputs.items() if k not in ("labels", "loss_index")}  # padding-free: cu_seq_lens…
    with rows_not_packed("attention_mask" not in kwargs and "position_ids" not in kwargs):
        if ddp is None:
            hidden = decoder(**kwargs, use_cache=False).last_hidden_state
        else:
            hidden = _through_ddp(ddp, decoder, kwargs)
    index = inputs.get("loss_index")
    if index is None:
        index = loss_positions(labels)  # on the GPU: one sync, fine outside the training loop
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
    y = labels.reshape(-1).index_select(0, index + 1)
    head = causal_lm.get_output_embeddings()
    if fused_chunk > 0 and h.requires_grad and h.is_cuda and getattr(head, "bias", None) is None \
            and not head.weight.requires_grad:
        from core.train.kernels.cross_entropy import linear_cross_entropy

        total = linear_cross_entropy(h, head.weight, y, fused_chunk)
    else:
        total = _chunked_ce(head, h, y, chunk)
    count = num_items_in_batch if num_items_in_batch is not None else max(int(index.numel()), 1)
    if isinstance(count, torch.Tensor):
        count = count.to(total.device)
    return total / count


_UNPACKED = contextvars.ContextVar("genaptitude_rows_not_packed", default=False)


@contextmanager
def rows_not_packed(known: bool):
    """While `known`, transformers' check for several sequences packed into one row answers "none" without asking
    the GPU. Without an attention mask, transformers 5.x builds the row positions itself (0, 1, 2, ... in every row:
    never packed) and then, at every forward, compares them on the GPU and reads the answer back: a host sync that
    makes the CPU wait for the whole previous step (the optimizer, and in a `--gpus` run the gradient all-reduce
    waiting for the slower worker) before it can queue this step's first kernel. Found by the profile's sync report
    (core/train/profiling.py) of a `--gpus 2` run on two H200s: 22.7 ms a step waited there on rank 0."""
    if not known:
        yield
        return
    _skip_packing_check()
    token = _UNPACKED.set(True)
    try:
        yield
    finally:
        _UNPACKED.reset(token)


def _skip_packing_check() -> None:
    """Wrap transformers.masking_utils.find_packed_sequence_indices (once) so that it answers None (one sequence a
    row) inside `rows_not_packed`, and asks the GPU as before anywhere else. Without that function (another
    transformers) nothing changes."""
    try:
        from transformers import masking_utils
    except ImportError:
        return
    original = getattr(masking_utils, "find_packed_sequence_indices", None)
    if original is None or getattr(original, "skips_when_unpacked", False):
        return

    def find_packed_sequence_indices(position_ids):
        return None if _UNPACKED.get() else original(position_ids)

    find_packed_sequence_indices.skips_when_unpacked = True
    masking_utils.find_packed_sequence_indices = find_packed_sequence_indices


def _through_ddp(ddp, decoder, kwargs: dict) -> torch.Tensor:
    """The decoder's output, computed through DDP's forward (which arms its gradient all-reduce), with logits for
    one position per row only: the LM head runs on the trained positions here, as without DDP."""
    seen: list[torch.Tensor] = []
    hook = decoder.register_forward_hook(
        lambda module, args, out: seen.append(out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]))
    try:
        ddp(**kwargs, use_cache=False, logits_to_keep=1)
    finally:
        hook.remove()
    return seen[-1]


def _chunked_ce(head, h: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    total = h.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], chunk):
        h_i, y_i = h[i:i + chunk], y[i:i + chunk]
        if torch.is_grad_enabled() and h_i.requires_grad:
            total = total + checkpoint(_chunk_ce, head, h_i, y_i, use_reentrant=False)
        else:
            total = total + _chunk_ce(head, h_i, y_i)
    return total
