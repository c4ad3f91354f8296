"""Hardware panel: what GPU is here and how busy it is, refreshed about once a second from NVML.

It sits at the top of the Overview tab (the first screen), so it sizes to its text and does not scroll itself.
"""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.containers import Vertical
from textual.widgets import Static
from textual.worker import get_current_worker

from ..messages import GpuSampled


def bar(used: float, total: float, width: int = 24) -> Text:
    """A VRAM bar that reads without colour: filled blocks, then shade; coloured by how full it is."""
    frac = min(max(used / total, 0.0), 1.0) if total else 0.0
    filled = round(frac * width)
    style = "red" if frac > 0.9 else "yellow" if frac > 0.7 else "green"
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"))


def gpu_lines(gpu: Any, sample: Any | None) -> Text:
    used = sample.used_gib if sample else gpu.used_gib
    total = sample.total_gib if sample else gpu.total_gib
    cc = gpu.compute_capability
    cc_text = f"{cc[0]}.{cc[1]}" if cc else "unknown"
    text = Text()
    text.append(f"GPU {gpu.index}  ", style="bold")
    text.append(gpu.name, style="bold")
    text.append(f"\n  compute capability {cc_text} · bf16 {'yes' if gpu.bf16 else 'no'}")
    text.append("\n  VRAM  ")
    text.append_text(bar(used, total))
    text.append(f"  {used:.1f} / {total:.1f} GiB ({used / total:.0%})" if total else "  unknown")
    util = f"{sample.util_percent}%" if sample and sample.util_percent is not None else "–"
    temp = f"{sample.temperature_c} °C" if sample and sample.temperature_c is not None else "–"
    text.append(f"\n  util  {util:<6}  temp {temp}")
    if getattr(gpu, "others", None):  # another user's job: the preset tab's GPU list lets a run take another GPU
        from core.gpus import others_text

        text.append(f"\n  {others_text(gpu)}", style="yellow")
    return text


def report_text(report: Any | None, samples: dict[int, Any]) -> Text:
    if report is None:
        return Text("Looking for GPUs…", style="dim")
    text = Text()
    if not report.gpus:
        text.append("No NVIDIA GPU available\n", style="bold yellow")
        text.append(report.nvml_error or "NVML reports no GPU")
        text.append("\n\nEverything else works: training runs on the CPU.", style="dim")
    for gpu in report.gpus:
        text.append_text(gpu_lines(gpu, samples.get(gpu.index)))
        text.append("\n\n")
    if report.gpus and report.nvml_error:  # a GPU NVML could not read: the list above is partial
        text.append(f"{report.nvml_error}\n\n", style="yellow")
    if report.gpus:
        text.append(f"Driver {report.driver_version or 'unknown'} · CUDA driver {report.cuda_driver_version or 'unknown'}")
    if report.torch_cuda is not None:
        text.append(f"\ntorch sees CUDA: {'yes' if report.torch_cuda else 'no'}")
    if report.bnb_cuda is not None:
        text.append(f"\nbitsandbytes 4-bit on CUDA: {'yes' if report.bnb_cuda else 'no'}")
    return text


class HardwarePanel(Vertical):
    """Shows the probe report; a thread worker samples NVML once, then every `interval` seconds (None: once)."""

    DEFAULT_CSS = """
    HardwarePanel { height: auto; }
    """

    def __init__(self, engine: Any, interval: float | None = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.interval = interval
        self.report: Any | None = None
        self.suggestion: Any | None = None
        self.samples: dict[int, Any] = {}

    def compose(self):
        yield Static(report_text(None, {}), id="hw-text")

    def show_report(self, report: Any, suggestion: Any | None = None) -> None:
        self.report, self.suggestion = report, suggestion
        self._paint()
        if report.gpus:
            self._sample_loop()

    def show_error(self, message: str) -> None:
        self.query_one("#hw-text", Static).update(Text.assemble(("Hardware check failed\n", "bold red"), message,
                                                                ("\nTraining on the CPU still works.", "dim")))

    def on_gpu_sampled(self, message: GpuSampled) -> None:
        self.samples = {s.index: s for s in message.samples}
        self._paint()

    def _paint(self) -> None:
        self.query_one("#hw-text", Static).update(report_text(self.report, self.samples))

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware-sample")
    def _sample_loop(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            self.post_message(GpuSampled(self.engine.sample()))
            if not self.interval or worker.cancelled_event.wait(self.interval):
                break
