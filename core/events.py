"""Typed events the engine sends to whoever drives it (CLI, TUI, tests).

Every event is a frozen dataclass with a `kind` tag and is JSON-serialisable through `to_json`, so the
CLI's `--json` stream, the TUI and a subprocess reader all see the same thing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Phase(Event):
    """A slow preparation step started (loading the model, tokenising, saving)."""

    kind: ClassVar[str] = "phase"
    name: str
    detail: str = ""


@dataclass(frozen=True)
class Progress(Event):
    """How far a long preparation step has got (e.g. rows tokenised), sent every batch."""

    kind: ClassVar[str] = "progress"
    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class DownloadProgress(Progress):
    """Bytes of a model download so far (`done`/`total`), sent about twice a second while it runs.

    A `Progress` whose unit is bytes: `rate_bps` is measured over the last few seconds (None until measurable),
    `eta_s` follows from it. `file` is the file being fetched."""

    kind: ClassVar[str] = "download"
    repo_id: str = ""
    file: str = ""
    rate_bps: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class TensorWritten(Progress):
    """One tensor of a GGUF export written (`done` of `total`): its GGUF name, the type it was stored in (Q8_0,
    F16, F32…) and its shape as GGUF lists it (columns first)."""

    kind: ClassVar[str] = "tensor_written"
    tensor: str = ""
    ggml_type: str = ""
    shape: tuple = ()


@dataclass(frozen=True)
class LogLine(Event):
    kind: ClassVar[str] = "log"
    message: str
    level: str = "info"


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    config: dict
    total_steps: int
    train_rows: int
    eval_rows: int
    device: str
    output_dir: str
    resumed_from_step: int = 0


@dataclass(frozen=True)
class StepLogged(Event):
    kind: ClassVar[str] = "step"
    step: int
    total_steps: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float | None
    tokens_per_s: float
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class EvalLogged(Event):
    kind: ClassVar[str] = "eval"
    step: int
    eval_loss: float


@dataclass(frozen=True)
class MemorySample(Event):
    kind: ClassVar[str] = "memory"
    step: int
    torch_allocated_gib: float | None
    torch_reserved_gib: float | None
    torch_peak_gib: float | None
    nvml_used_gib: float | None
    nvml_total_gib: float | None
    process_rss_gib: float | None
    gpus_used_gib: list | None = None  # NVML used per GPU of a data-parallel run (rank 0 reads them all)
    gpu_ids: list | None = None  # the NVML index of the run's GPU(s), as nvidia-smi numbers them (core/gpus.py)


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass(frozen=True)
class OomRecovered(Event):
    """A CUDA out-of-memory was caught; the micro-batch halved and accumulation doubled (same effective batch)."""

    kind: ClassVar[str] = "oom_recovered"
    step: int
    old_batch_size: int
    new_batch_size: int
    old_grad_accum: int
    new_grad_accum: int


@dataclass(frozen=True)
class HeldOutScored(Event):
    """After training: the run's own held-out rows answered greedily by the base model and by the adapter
    (core/train/learncheck.py), so the user is told whether the adapter learned, not only that the run finished."""

    kind: ClassVar[str] = "held_out"
    rows: int  # rows answered by both within the time limit
    base_exact: float
    adapter_exact: float
    base_similarity: float
    adapter_similarity: float
    seconds: float
    verdict: str  # "learned", "partly", "not learned", "base knows" (the base already answers them), "diverged"
    advice: str = ""  # what to try next when it did not learn


@dataclass(frozen=True)
class Diverged(Event):
    """The run is diverging (core/train/divergence.py): `why` in words, at `step`. `fatal`: the loss or gradient
    norm is not finite, the weights are NaN and the run stops without an adapter; else the loss climbed far above
    its start and the run goes on. `advice`: what to do (a lower learning rate; fp32 on a T4)."""

    kind: ClassVar[str] = "diverged"
    step: int
    why: str
    fatal: bool
    advice: str = ""


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    output_dir: str
    steps: int
    total_steps: int
    train_loss: float | None
    eval_loss: float | None
    stopped_early: bool
    runtime_s: float
    checkpoint_dir: str | None = None
    diverged: str = ""  # why the run ended diverged (core/train/divergence.py); its adapter is not worth using


@dataclass(frozen=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    message: str
    hint: str = ""
    problems: list = field(default_factory=list)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (Phase, Progress, DownloadProgress, TensorWritten, LogLine, RunStarted, StepLogged, EvalLogged,
                MemorySample, CheckpointSaved, OomRecovered, Diverged, HeldOutScored, Finished, Failed)
}

EventSink = Callable[[Event], None]


def loss_text(value: float | None) -> str:
    """A loss as every view shows it: four decimals (a small run's loss moves in the third), "–" when there is none."""
    return "–" if value is None else f"{value:.4f}"


def from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its `to_dict` form (used when a run's JSON stream is read back)."""
    cls = EVENT_TYPES[data["event"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def from_json(line: str) -> Event:
    return from_dict(json.loads(line))
