"""A scripted engine for the TUI tests (fixed hardware, datasets and training events, no torch), and pilot helpers."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Callable

from core.adapter.evaluate import EvalResult, RowResult
from core.data.dataset import parse_lines
from core.errors import TrainerError
from core.estimate import VramEstimate
from core.events import (CheckpointSaved, EvalLogged, Failed, Finished, HeldOutScored, LogLine, MemorySample, Phase,
                         RunStarted, StepLogged)
from core.data.render import LengthStats, RenderedExample
from core.hardware import GpuInfo, GpuSample, HardwareReport
from textual.widgets import Static
from tui.bridge import Engine

NO_GPU = HardwareReport(nvml_error="NVIDIA driver library (libnvidia-ml) not found: no NVIDIA GPU or driver on "
                                   "this machine")
RTX_3060 = HardwareReport(
    gpus=[GpuInfo(0, "NVIDIA GeForce RTX 3060", total_gib=8.0, free_gib=6.5, used_gib=1.5,
                  compute_capability=(8, 6), bf16=True)],
    driver_version="550.54.14", cuda_driver_version="12.4")
RTX_SAMPLES = [GpuSample(0, "NVIDIA GeForce RTX 3060", used_gib=3.0, total_gib=8.0, util_percent=37, temperature_c=54)]

GOOD_LINES = [
    '{"instruction": "Analyser cet élément technique du domaine safety.", "input": "{\\"id\\": \\"1\\", '
    '\\"kind\\": \\"LogicalComponent\\", \\"name\\": \\"Contrôleur de freinage\\"}", '
    '"output": "L\'entité appartient à la collection \'safety_rules\' [un2]."}',
    '{"instruction": "Résumer la fonction.", "input": "", "output": "La fonction contrôle l\'attitude."}',
    '{"instruction": "Which layer holds this component?", "input": "{\\"layer\\": \\"LA\\"}", '
    '"output": "The logical architecture layer (LA)."}',
]
BAD_LINES = GOOD_LINES[:2] + ['{"instruction": "Sans réponse", "input": ""'] + GOOD_LINES[2:] + ['{"text": 3}']


def dataset_report(lines: list[str], path: str = "dataset.jsonl", skip_invalid: bool = False):
    """A real `DatasetReport` (or the real `DatasetError`) for these lines, with a fixed path for snapshots."""
    return parse_lines(("\n".join(lines) + "\n").encode(), path, skip_invalid=skip_invalid)


PREVIEW = RenderedExample(
    segments=[("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
               "Analyser cet élément technique du domaine safety.\n{\"id\": \"1\"}<|im_end|>\n"
               "<|im_start|>assistant\n", False),
              ("L'entité appartient à la collection 'safety_rules' [un2].<|im_end|>", True), ("\n", False)],
    n_tokens=58, n_trained=17, truncated=False)
STATS = LengthStats(count=3, min=41, median=58, p95=73, max=75, over_max=0, max_length=512)


# What the evaluate view gets: the base model misses every row, the adapter gets two of three exactly.
EVAL_HEADING = "3 held-out rows of dataset.jsonl (the run's eval split), base model smollm2-135m-instruct"
_PROMPTS = [(1, "Analyser cet élément technique du domaine safety.\n\n{\"id\": \"1\", \"kind\": \"LogicalComponent\", "
                "\"name\": \"Contrôleur de freinage\"}", "L'entité appartient à la collection 'safety_rules' [un2]."),
            (2, "Résumer la fonction.", "La fonction contrôle l'attitude."),
            (3, "Which layer holds this component?\n\n{\"layer\": \"LA\"}", "The logical architecture layer (LA).")]
_BASE = [("Le contrôleur de freinage est un composant logique du système.", 0.31),
         ("Cette fonction gère plusieurs aspects du système.", 0.30),
         ("This component is in the physical layer.", 0.45)]
_TUNED = [("L'entité appartient à la collection 'safety_rules' [un2].", 1.0),
          ("La fonction contrôle l'altitude.", 0.97),
          ("The logical architecture layer (LA).", 1.0)]


def eval_results() -> list[EvalResult]:
    def rows(answers):
        return [RowResult(line, prompt, ref, a, a == ref, sim) for (line, prompt, ref), (a, sim) in zip(_PROMPTS, answers)]

    return [EvalResult("base", rows(_BASE), eval_loss=2.8412), EvalResult("adapter", rows(_TUNED), eval_loss=0.3127)]


def chat_answers(prompt: str) -> tuple[str, str]:
    return f"I am not sure what you mean by: {prompt}", f"In GenAptitude terms: {prompt} → the LA layer."


def adapter_run(on_event: Callable, stop_event: threading.Event, output_dir: str) -> Path:
    """`happy_run` that also leaves a real adapter folder (config, weights, tokenizer, a checkpoint) behind."""
    out = Path(output_dir)
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / "adapter_config.json").write_text('{"r": 16}')
    (out / "adapter_model.safetensors").write_bytes(b"weights")
    (out / "tokenizer.json").write_text("{}")
    (out / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"resume state")
    return happy_run(on_event, stop_event, output_dir)


def happy_run(on_event: Callable, stop_event: threading.Event, output_dir: str) -> Path:
    """Four steps with an evaluation, memory samples and a checkpoint, then Finished."""
    on_event(Phase("loading model", "smollm2-135m-instruct"))
    on_event(RunStarted(config={}, total_steps=4, train_rows=3, eval_rows=1, device="cpu", output_dir=output_dir))
    for step, loss in enumerate((2.5, 2.0, 1.6, 1.25), start=1):
        on_event(StepLogged(step=step, total_steps=4, epoch=step / 4, loss=loss, lr=1e-3, grad_norm=0.5,
                            tokens_per_s=1234.0, elapsed_s=3.0 * step, eta_s=3.0 * (4 - step)))
        on_event(MemorySample(step=step, torch_allocated_gib=1.0 + step / 10, torch_reserved_gib=2.0,
                              torch_peak_gib=1.5, nvml_used_gib=3.0, nvml_total_gib=8.0, process_rss_gib=2.5))
        if step == 2:
            on_event(EvalLogged(step=2, eval_loss=1.9))
            on_event(CheckpointSaved(step=2, path=f"{output_dir}/checkpoints/checkpoint-2"))
    on_event(EvalLogged(step=4, eval_loss=1.4))
    on_event(LogLine("saving adapter"))
    on_event(HeldOutScored(rows=8, base_exact=0.0, adapter_exact=0.875, base_similarity=0.21,
                           adapter_similarity=0.97, seconds=4.2, verdict="learned"))
    on_event(Finished(output_dir=output_dir, steps=4, total_steps=4, train_loss=1.25, eval_loss=1.4,
                      stopped_early=False, runtime_s=12.0))
    return Path(output_dir)


def stoppable_run(on_event: Callable, stop_event: threading.Event, output_dir: str) -> Path:
    """Two steps, then waits for the stop key (as a long run would), then saves and stops early."""
    on_event(RunStarted(config={}, total_steps=100, train_rows=3, eval_rows=1, device="cpu", output_dir=output_dir))
    for step in (1, 2):
        on_event(StepLogged(step=step, total_steps=100, epoch=0.02 * step, loss=2.0, lr=1e-3, grad_norm=None,
                            tokens_per_s=1000.0, elapsed_s=1.0 * step, eta_s=98.0))
    if not stop_event.wait(10):
        raise AssertionError("the stop event was never set")
    on_event(Phase("saving", "adapter and resumable checkpoint"))
    on_event(Finished(output_dir=output_dir, steps=2, total_steps=100, train_loss=2.0, eval_loss=None,
                      stopped_early=True, runtime_s=2.0, checkpoint_dir=f"{output_dir}/checkpoints/checkpoint-2"))
    return Path(output_dir)


def failing_run(on_event: Callable, stop_event: threading.Event, output_dir: str) -> Path:
    """What core.train.engine does on a user error: emit Failed, then raise the TrainerError."""
    on_event(Phase("loading model", "Qwen/Qwen2.5-1.5B-Instruct"))
    message, hint = "bitsandbytes sees no CUDA device", "install a CUDA build of torch, or pick the cpu preset"
    on_event(Failed(message, hint))
    raise TrainerError(message, hint=hint)


def crashing_run(on_event: Callable, stop_event: threading.Event, output_dir: str) -> Path:
    raise RuntimeError("something nobody expected")


class FakeEngine(Engine):
    """Scripted answers; records each `train` call. `suggest` and `format_label` are the real ones."""

    def __init__(self, report: HardwareReport = NO_GPU, samples: list | None = None,
                 lines: list[str] | None = None, run: Callable = happy_run) -> None:
        self.report, self.samples = report, samples or []
        self.lines = GOOD_LINES if lines is None else lines
        self.run = run
        self.train_calls: list[dict[str, Any]] = []
        self.stop_event: threading.Event | None = None
        self.preview_calls: list[tuple] = []
        self.stats: LengthStats | None = None  # what length_stats answers (default: every row fits)
        # after a run: what `evaluate` and `chat` answer; a gate (set it to let them answer) shows their busy state
        self.eval_error: Exception | None = None
        self.chat_error: Exception | None = None
        self.gate: threading.Event | None = None
        self.evaluate_calls: list[tuple] = []
        self.chat_calls: list[tuple] = []
        self.chat_closed = 0
        self.evaluations_done = 0  # evaluate calls that got to the end (closing the screen stops one midway)

    def probe(self) -> HardwareReport:
        return self.report

    def sample(self) -> list:
        return list(self.samples)

    def read_dataset(self, path: str, skip_invalid: bool = False):
        return dataset_report(self.lines, path, skip_invalid)

    def preview(self, model: str, example: Any, max_length: int, truncation: str = "keep-answer",
                instruction_turn: str = "system") -> RenderedExample:
        self.preview_calls.append((model, example.line, max_length))
        return PREVIEW

    def length_stats(self, model: str, examples: list, max_length: int,
                     instruction_turn: str = "system") -> LengthStats:
        if self.stats is not None:
            return self.stats
        return LengthStats(len(examples), STATS.min, STATS.median, STATS.p95, STATS.max, STATS.over_max, max_length)

    def estimate(self, config, usable_gib=None) -> VramEstimate:
        from core.estimate import micro_batch_tokens

        act = 0.25 * micro_batch_tokens(config) / 1024
        return VramEstimate(round(1.0 + act, 2), {"weights": 0.8, "LoRA+optimizer": 0.2, "activations": act})

    def train(self, config, dataset_path: str, output_dir: str, *, on_event: Callable,
              stop_event: threading.Event, **kw: Any) -> Path:
        self.train_calls.append({"config": config, "dataset": dataset_path, "output": output_dir, **kw})
        self.stop_event = stop_event
        return self.run(on_event, stop_event, output_dir)

    def _wait(self) -> None:
        if self.gate is not None and not self.gate.wait(10):
            raise AssertionError("the test never opened the gate")

    def evaluate(self, adapter: str, dataset_path: str, limit: int | None = None,
                 on_progress: Callable | None = None, *, skip_invalid: bool = False) -> list[EvalResult]:
        self.evaluate_calls.append((adapter, dataset_path, limit, skip_invalid))
        say = on_progress or (lambda text: None)
        say(EVAL_HEADING)
        say("loading smollm2-135m-instruct and the adapter")
        self._wait()
        if self.eval_error is not None:
            raise self.eval_error
        say("base: answering rows 1–3 of 3")
        say("adapter: answering rows 1–3 of 3")
        self.evaluations_done += 1
        return eval_results()

    def chat_load(self, adapter: str) -> str:
        self.chat_calls.append(("load", adapter))
        self._wait()
        if self.chat_error is not None:
            raise self.chat_error
        return "smollm2-135m-instruct"

    def chat(self, adapter: str, prompt: str) -> tuple[str, str]:
        self.chat_calls.append(("chat", adapter, prompt))
        if self.chat_error is not None:
            raise self.chat_error
        return chat_answers(prompt)

    def chat_close(self) -> None:
        self.chat_closed += 1


# -- pilot helpers ------------------------------------------------------------------------------------------
def screen_text(app) -> str:
    """The characters on the terminal right now (active screen), line by line."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def static_text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def log_text(app) -> str:
    """The log's words, single-spaced, so lines the log wrapped still match."""
    return " ".join(" ".join(strip.text for strip in app.query_one("#run-log").lines).split())


async def wait_until(pilot, predicate, timeout: float = 5.0) -> None:
    """Poll app state (a plain sleep: pilot.pause would repaint the whole screen each time), then repaint once."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting; screen was:\n{screen_text(pilot.app)}")
        await asyncio.sleep(0.01)
    if pilot.app.is_running:
        await pilot.pause()


async def settle(pilot) -> None:
    """Wait for the probe, the dataset read (also shown on the overview) and the token-length stats to come back."""
    app = pilot.app
    await wait_until(pilot, lambda: app.hardware is not None and (app.dataset.report or app.dataset.error)
                     and app.overview.dataset_shown is not None
                     and (app.dataset.error or app.dataset.stats is not None))


def make_app(engine, tmp_path, **kw):
    """The app on a scripted engine, writing under tmp_path, without timers or animations that slow a pilot."""
    from tui.app import TrainerApp

    kw.setdefault("output", str(tmp_path / "adapter"))
    app = TrainerApp(engine, refresh_interval=None, stats_delay=0, show_startup_time=False, **kw)
    app.animation_level = "none"  # the tab underline's slide only slows the pilot down
    return app
