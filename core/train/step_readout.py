"""The numbers a step reports (its loss and gradient norm; with data-parallel workers also their tokens and their
stop/save votes), read from the GPU one step late instead of waiting for them.

transformers' Trainer reads the loss with `.item()` at each logged step (and checks it for nan/inf at every step):
each read waits for the GPU to finish the step, then the GPU idles while the CPU runs the Trainer's Python between
steps, fetches and collates the next batch and launches its first kernels. On an H200 that was ~45 ms of a 558 ms
step (results/h200-issue15-session8/2-ab-embeddings/profile.txt). Here each step's values are copied to pinned host
memory behind the step's own work and read when the next step ends, when they are there already: the CPU keeps a
step ahead of the GPU. With workers, the values are summed across them by one all-reduce on the GPU stream, and
every worker reads the same step's result at the same later step, so they agree on stopping and saving.

On the CPU (`lag` 0) everything is read at once: nothing to overlap.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Closed:
    """One step's values as read: loss (summed over its micro-batches), gradient norm (None: not clipped), the
    sums of the extra values (tokens, votes) over workers, and what the caller attached when it closed the step."""

    step: int
    loss: float
    grad_norm: float | None
    extra: list[float]
    meta: dict = field(default_factory=dict)


class StepReadout:
    def __init__(self, device: str, workers: int = 1, lag: int | None = None):
        self.device = device
        self.workers = workers
        self.lag = (1 if device == "cuda" else 0) if lag is None else lag
        self._loss = None  # this step's loss so far, on the device
        self.grad_norm = None  # this step's gradient norm (set by the clipping), on the device or a float
        self._pending: deque = deque()  # (step, host values, event or None, meta)

    def add_loss(self, loss) -> None:
        """A micro-batch's loss (what Trainer.training_step returns), added on the device."""
        loss = loss.detach()
        self._loss = loss if self._loss is None else self._loss + loss

    def close(self, step: int, extra: tuple[float, ...] = (), meta: dict | None = None) -> None:
        """End `step`: its loss, gradient norm and `extra` go to the host (summed over workers) without waiting."""
        import torch

        from core.train.distributed import worker_device

        device = self._loss.device if self._loss is not None else torch.device(worker_device(self.device))
        norm = self.grad_norm
        loss = self._loss.float().reshape(()) if self._loss is not None else torch.zeros((), device=device)
        on_device = isinstance(norm, torch.Tensor)
        # The host's values travel in one non-blocking copy from pinned memory: torch.tensor(x, device="cuda")
        # waits for the GPU to finish all it was given (a synchronous copy), which made each step's end a sync.
        sent = torch.tensor([float("nan") if norm is None or on_device else float(norm), *(float(v) for v in extra)],
                            dtype=torch.float32)
        sent = sent.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else sent.to(device)
        norm = norm.float().reshape(()).to(device) if on_device else sent[0]
        vec = torch.cat([torch.stack([loss, norm]), sent[1:]])
        if self.workers > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(vec)  # NCCL: queued on the stream, the CPU goes on
        event = None
        if vec.is_cuda:
            host = torch.empty(vec.shape, dtype=vec.dtype, pin_memory=True)
            host.copy_(vec, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = vec
        self._pending.append((step, host, event, meta or {}))
        self._loss = None
        self.grad_norm = None

    def ready(self, now: int | None = None, flush: bool = False) -> list[Closed]:
        """The closed steps to report now: all of them with `flush`, else those at least `lag` steps before `now`
        (waiting for them if the GPU has not got there: a fixed rule, so every worker reads the same steps)."""
        out = []
        while self._pending and (flush or now is None or self._pending[0][0] <= now - self.lag):
            step, host, event, meta = self._pending.popleft()
            if event is not None:
                event.synchronize()
            loss, norm, *extra = host.tolist()
            if self.workers > 1:
                loss, norm = loss / self.workers, norm / self.workers  # the mean over workers, as Trainer logs it
            out.append(Closed(step, loss, None if norm != norm else norm, extra, meta))
        return out
