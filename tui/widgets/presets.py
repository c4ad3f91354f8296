"""Preset panel: pick a preset, edit its key values (validated as typed), see the VRAM estimate and fit."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from core import gpus as gpu_policy
from core.estimate import usable_on
from core.errors import InputError, Problem
from core.presets import PRESETS, SETTINGS, TrainConfig, batch_description, config_for, gpu_count

from ..messages import ConfigChanged

# (TrainConfig field, label, type) for the values a user typically changes: the fields whose metadata has a label.
FIELDS: tuple[tuple[str, str, type], ...] = tuple((s.name, s.label, s.kind) for s in SETTINGS.values() if s.label)


def shown(name: str, value: Any) -> str:
    if name == "max_steps" and value <= 0:
        return ""
    if name == "lr" and value == 0:
        return "auto"  # core.presets.auto_lr picks it from the model when the run loads it
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse(name: str, kind: type, text: str) -> tuple[Any, str]:
    """The typed value and an error message ('' when fine): the setting's own reading (Setting.parse, as the
    flags'), after the panel's blanks (max steps empty: by epochs; learning rate auto)."""
    text = text.strip()
    if name == "max_steps" and text in ("", "0"):
        return -1, ""
    if name == "lr" and text.lower() in ("auto", "0"):
        return 0.0, ""
    if not text:
        return None, "required"
    try:
        return SETTINGS[name].parse(text), ""
    except ValueError as exc:
        return None, str(exc)


def run_plan(config: TrainConfig, report: Any | None) -> tuple[Any | None, str]:
    """The GPUs this config's run would use here (core/gpus.py, as the CLI decides), or None and why not."""
    if report is None or config.device != "cuda" or not report.gpus:
        return None, ""
    try:
        return gpu_policy.choose(report.gpus, count=config.gpus, ids=config.gpu_ids,
                                 visible=gpu_policy.user_env()["CUDA_VISIBLE_DEVICES"]), ""
    except InputError as exc:
        return None, exc.message


def gpu_prompt(gpu: Any) -> Text:
    """One row of the GPU list: its NVML index, free memory, and what other processes hold on it."""
    text = Text.assemble((f"GPU {gpu.index}", "bold"), f"  {gpu.name}  ",
                         (f"{gpu.free_gib:.1f}", "bold green" if gpu.free_gib > 0.5 * gpu.total_gib else "bold yellow"),
                         f" of {gpu.total_gib:.1f} GiB free")
    if gpu.others:
        text.append(f"  · {gpu_policy.others_text(gpu)}", style="yellow")
    return text


def fit_warnings(config: TrainConfig, report: Any | None, need_gib: float | None) -> list[str]:
    """Reasons this run will probably not work on this machine (asked to confirm before it starts)."""
    if report is None or config.device != "cuda":
        return []
    if not report.gpus:
        return [f"preset {config.preset} needs an NVIDIA GPU and none was found; pick cpu"]
    plan, _ = run_plan(config, report)
    # the GPU the run would use (the fullest of them); without a plan (too many asked for), the freest here
    gpu = min(plan.gpus, key=lambda g: g.free_gib) if plan and plan.gpus else max(report.gpus, key=lambda g: g.free_gib)
    # the rule is core.gpus.fit_problems', as the run's check before loading; the facts are NVML's
    problems = gpu_policy.fit_problems(config, count=len(report.gpus), bf16=gpu.bf16, name=gpu.name,
                                       need_gib=need_gib, free_gib=gpu.free_gib)
    return [f"{p.message}: {p.fix}" for p in problems]


class FieldRow(Horizontal):
    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Label { width: 14; }
    FieldRow > Input { width: 12; }
    FieldRow > Input.-invalid { color: $error; }
    FieldRow > .message { width: 1fr; padding-left: 1; color: $error; }
    FieldRow#row-model > Input { width: 1fr; max-width: 48; }
    FieldRow#row-model > .message { width: auto; max-width: 40; }
    """

    def __init__(self, name: str, label: str) -> None:
        super().__init__(id=f"row-{name}")
        self.field_name, self.label = name, label

    def compose(self) -> ComposeResult:
        yield Label(self.label)
        yield Input(id=f"field-{self.field_name}", compact=True, select_on_focus=False,
                    placeholder="off" if self.field_name == "max_steps" else "")
        yield Static("", id=f"msg-{self.field_name}", classes="message")


class PresetPanel(Horizontal):
    DEFAULT_CSS = """
    PresetPanel { height: 1fr; }
    PresetPanel > #preset-side { width: 26; }
    PresetPanel #preset-list { height: auto; max-height: 8; }
    PresetPanel #suggestion { padding: 1 0 0 1; color: $text-muted; }
    PresetPanel > #preset-form { width: 1fr; padding: 0 1; }
    PresetPanel #preset-about { color: $text-muted; margin-bottom: 1; }
    PresetPanel #general { color: $error; }
    PresetPanel #estimate { margin-top: 1; }
    PresetPanel #why { margin-top: 1; color: $text-muted; }
    PresetPanel #gpu-title { margin-top: 1; }
    PresetPanel #gpu-list { height: auto; max-height: 10; border: none; padding: 0; }
    PresetPanel #gpu-plan { color: $text-muted; }
    """

    BINDINGS = [Binding("escape", "leave_field", "Leave field")]

    def __init__(self, engine: Any, preset: str | None = None, model: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.model_override = model
        self.preset = preset or "cpu"
        self.chosen = preset is not None  # the user picked one: a hardware suggestion does not override it
        self.report: Any | None = None
        self.suggestion: Any | None = None
        self.config: TrainConfig | None = None
        self.errors: dict[str, str] = {}
        self.estimate_gib: float | None = None
        self.length_stats: Any | None = None  # core.data.render.LengthStats of the dataset, once measured
        self._checked: dict[str, str] = {}  # field values at the last validation
        self.data_rows: int | None = None  # the dataset's chat rows and typical token length, for the step plan
        self.data_tokens: int | None = None
        self.gpu_ids: tuple[int, ...] = ()  # GPUs ticked in the list (NVML indices); () = the freest

    def compose(self) -> ComposeResult:
        with Vertical(id="preset-side"):
            yield OptionList(*[Option(self._prompt(n), id=n) for n in PRESETS], id="preset-list")
            yield Static("", id="suggestion")
        with VerticalScroll(id="preset-form"):
            yield Static("", id="preset-about")
            for name, label, _ in FIELDS:
                yield FieldRow(name, label)
            yield Static("", id="gpu-title")
            yield SelectionList[int](id="gpu-list", compact=True)
            yield Static("", id="gpu-plan")
            yield Static("", id="general")
            yield Static("", id="estimate")
            yield Static("", id="why")

    def on_mount(self) -> None:
        self._show_gpu_list()
        self.use_preset(self.preset, chosen=self.chosen)

    def _prompt(self, name: str) -> Text:
        text = Text(name)
        if self.suggestion is not None and self.suggestion.preset == name:
            text.append("  ★ suggested", style="bold green")
        return text

    # -- choosing ------------------------------------------------------------------------------------------
    def set_hardware(self, report: Any, suggestion: Any) -> None:
        self.report, self.suggestion = report, suggestion
        option_list = self.query_one("#preset-list", OptionList)
        for name in PRESETS:
            option_list.replace_option_prompt(name, self._prompt(name))
        reason = Text.assemble(("suggested: ", "bold"), (suggestion.preset, "bold green"), "\n", suggestion.reason)
        self.query_one("#suggestion", Static).update(reason)
        self._fill_gpu_list()
        if self.chosen:
            self.revalidate()
        else:
            self.use_preset(suggestion.preset, chosen=False)

    def use_preset(self, name: str, chosen: bool = True) -> None:
        """Make `name` the active preset and reset the fields to its values."""
        self.preset = name
        self.chosen = self.chosen or chosen
        option_list = self.query_one("#preset-list", OptionList)
        index = option_list.get_option_index(name)
        if option_list.highlighted != index:
            option_list.highlighted = index
        gpus = getattr(self.suggestion, "gpus", 1) if PRESETS[name].needs_cuda else 1  # all of the same GPUs
        config = config_for(name, model=self.model_override, gpus=gpus)
        for field, _, _ in FIELDS:
            self.query_one(f"#field-{field}", Input).value = shown(field, getattr(config, field))
        if self.gpu_ids:  # GPUs ticked in the list stay chosen: their number is the run's (core.presets.gpu_count)
            self.query_one("#field-gpus", Input).value = str(gpu_count(None, self.gpu_ids))
        self._show_gpu_list()
        self.revalidate()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        # Read the list's state now: highlight events set by use_preset itself may arrive late and are stale.
        option = event.option_list.highlighted_option
        if event.option_list.has_focus and option is not None and option.id != self.preset:
            self.use_preset(option.id)

    def action_leave_field(self) -> None:
        """Back to the preset list, where the app's keys (1-4, t, q…) work again."""
        self.query_one("#preset-list", OptionList).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":
            return isinstance(self.app.focused, Input)
        return True

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.query_one("#field-epochs", Input).focus()

    # -- GPUs ----------------------------------------------------------------------------------------------
    def _fill_gpu_list(self) -> None:
        """One row per GPU this process may use (all, or those CUDA_VISIBLE_DEVICES names), by NVML index."""
        gpus = gpu_policy.visible_gpus(self.report.gpus, gpu_policy.user_env()["CUDA_VISIBLE_DEVICES"]) \
            if self.report is not None else []
        gpu_list = self.query_one("#gpu-list", SelectionList)
        gpu_list.clear_options()
        gpu_list.add_options([Selection(gpu_prompt(g), g.index, g.index in self.gpu_ids) for g in gpus or []])
        self._show_gpu_list()

    def _show_gpu_list(self) -> None:
        gpu_list = self.query_one("#gpu-list", SelectionList)
        show = PRESETS[self.preset].needs_cuda and gpu_list.option_count > 0
        for selector in ("#gpu-title", "#gpu-list", "#gpu-plan"):
            self.query_one(selector).display = show
        self.query_one("#gpu-title", Static).update(Text.assemble(
            ("GPUs", "bold"), ("  space ticks the ones to use; none ticked: the freest", "dim")))

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        self.gpu_ids = tuple(sorted(event.selection_list.selected))
        if self.gpu_ids:
            self.query_one("#field-gpus", Input).value = str(gpu_count(None, self.gpu_ids))
        self.revalidate()

    def _show_plan(self) -> None:
        """Which GPUs the run would use and why, in the words `doctor` and the CLI use."""
        widget = self.query_one("#gpu-plan", Static)
        if self.config is None:
            widget.update("")
            return
        plan, why_not = run_plan(self.config, self.report)
        widget.update(Text(f"a run uses {plan.reason}" if plan and plan.gpus else why_not))

    # -- editing -------------------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        # Setting the fields from a preset posts Changed too, after revalidate() has already seen the values.
        if self._checked.get((event.input.id or "").removeprefix("field-")) != event.value:
            self.revalidate()

    def on_descendant_focus(self, event) -> None:
        field = (event.widget.id or "").removeprefix("field-")
        reason, setting = PRESETS[self.preset].reasons.get(field), SETTINGS.get(field)
        text = Text.assemble(("why this value: ", "bold"), reason) if reason else \
            Text.assemble((f"{setting.label}: ", "bold"), setting.help) if setting else ""  # what it does: its help
        self.query_one("#why", Static).update(text)

    def revalidate(self) -> None:
        """Parse every field, build the config, validate it, and put each message next to its field."""
        values, errors = {}, {}
        self._checked = {name: self.query_one(f"#field-{name}", Input).value for name, _, _ in FIELDS}
        for name, _, kind in FIELDS:
            value, error = parse(name, kind, self._checked[name])
            if error:
                errors[name] = error
            else:
                values[name] = value
        general: list[str] = []
        config = None
        try:
            cuda = PRESETS[self.preset].needs_cuda
            config = config_for(self.preset, **values, gpu_ids=self.gpu_ids if cuda else ())
            config.validate()
        except InputError as exc:
            for p in exc.problems or [Problem(exc.message)]:
                if p.field not in self._checked:  # a field this panel does not show: said under the fields
                    general.append(p.message)
                elif p.field not in errors:  # (a field that does not parse keeps that message)
                    errors[p.field] = p.message
        self.config = None if errors or general else config
        self.errors = errors
        for name, _, _ in FIELDS:
            self.query_one(f"#msg-{name}", Static).update(Text(errors.get(name, "")))
            self.query_one(f"#field-{name}", Input).set_class(name in errors, "-invalid")
        self.query_one("#general", Static).update(Text("\n".join(general)))
        self._show_plan()
        self._show_about()
        self._show_estimate()
        self.post_message(ConfigChanged(self.config))

    def resolved(self, usable_gib: float | None = None, config: TrainConfig | None = None):
        """What the run of these values (or of `config`) will choose before it loads the model
        (core.train.resolve.before_load: the precision this CPU trains in, quantization "auto"), or None while a value
        is invalid."""
        from core.train.resolve import before_load

        config = config or self.config
        if config is None:
            return None
        return before_load(config, amx=bool(getattr(self.report, "cpu_amx_bf16", False)), usable_gib=usable_gib)

    def _show_about(self) -> None:
        """The preset's summary, then how a run of it computes here (the cpu preset trains bf16 on an AMX CPU)."""
        text = Text(f"{self.preset}: {PRESETS[self.preset].summary}")
        resolved = self.resolved()
        if resolved is not None:
            from core.train.resolve import precision_words

            said = [c.said for c in resolved.choices if c.setting == "precision"]
            text.append("\nhere: ", style="bold").append(said[0] if said else precision_words(resolved.config))
        self.query_one("#preset-about", Static).update(text)

    def set_data(self, rows: int | None, typical_tokens: int | None) -> None:
        """The dataset the run will train on (rows, a typical row's tokens): the tab shows the optimizer steps."""
        self.data_rows, self.data_tokens = rows, typical_tokens
        if self.config is not None:
            self._show_estimate()

    def plan(self):
        """(optimizer steps the run will make, a warning when they are too few), from the dataset's size."""
        if self.config is None or not self.data_rows:
            return None, None
        from core.data.batching import few_updates_warning, plan_for

        train_rows = max(1, round(self.data_rows * (1 - self.config.eval_fraction)))
        plan = plan_for(self.config, [self.data_tokens or 256] * train_rows, max(self.config.gpus, 1))
        return plan, few_updates_warning(plan, train_rows)

    def set_length_stats(self, stats: Any) -> None:
        """The dataset's token lengths: the estimate then suggests a max length that fits them."""
        self.length_stats = stats
        self._show_estimate()

    def _max_length_text(self, c: TrainConfig) -> Text:
        """How the dataset's rows compare with max length, and the max length that would fit 95% / all of them, each
        with its memory estimate (a suggestion: the user types it in)."""
        from dataclasses import replace

        stats = self.length_stats
        if stats is None or stats.max_length != c.max_length:
            return Text()
        where = "VRAM" if c.device == "cuda" else "RAM"
        text = Text("\n")
        if not stats.over_max:
            return text.append(f"max length {c.max_length:,}: all {stats.count:,} rows fit", style="green")
        text.append(f"max length {c.max_length:,}: {stats.over_max:,} of {stats.count:,} rows are longer "
                    f"({c.truncation}: " + {"keep-answer": "input cut in the middle, answer whole",
                                            "right": "cut from the right", "drop": "left out"}.get(c.truncation, "?")
                    + ")", style="yellow")
        fits = []
        usable = usable_on(c, run_plan(c, self.report)[0])
        here = self.resolved(usable, c).config  # as the run will compute (core/train/resolve.py)
        for label, length in (("95% of rows", stats.suggest_max_length()),
                              ("all rows", stats.suggest_max_length(all_rows=True))):
            if length <= c.max_length:
                continue
            try:
                need = self.engine.estimate(replace(here, max_length=length), usable).total_gib
            except Exception:  # the estimate is a help, never a reason to fail
                gib = ""
            else:
                gib = f", {where} ≈ {need:.1f} GiB"
                free = max((g.free_gib for g in getattr(self.report, "gpus", None) or []), default=None)
                if c.device == "cuda" and free is not None and need > free:
                    gib += f" (more than the {free:.1f} GiB free)"
            fits.append(f"{length:,} fits {label}{gib}")
        if fits:
            text.append("\nsuggested max length: " + "; ".join(dict.fromkeys(fits)), style="bold")
        return text

    def _show_estimate(self) -> None:
        widget = self.query_one("#estimate", Static)
        self.estimate_gib = None
        if self.config is None:
            widget.update(Text("fix the values marked above to see the memory estimate", style="dim"))
            return
        c = self.config
        label, detail = batch_description(c)
        text = Text.assemble((f"{label} ", "bold"), detail)
        plan, few = self.plan()
        if plan is not None:
            text.append(f"\n≈ {plan.updates:,} optimizer steps", style="bold")
            epochs = f" × {c.epochs:g} epoch{'' if c.epochs == 1 else 's'}" if c.max_steps <= 0 else ""
            text.append(f" for {self.data_rows:,} rows{epochs}")
            if (plan.batch_tokens, plan.grad_accum, plan.batch_size) != (c.batch_tokens, c.grad_accum, c.batch_size):
                text.append("  (smaller batches for this small export, so it learns)", style="dim")
        gpu_plan, _ = run_plan(c, self.report)
        usable = usable_on(c, gpu_plan)
        resolved = self.resolved(usable)  # the precision and base the run will take (core/train/resolve.py)
        try:
            est = self.engine.estimate(resolved.config, usable)
        except Exception as exc:  # the estimate is a help, never a reason to fail
            text.append(f"\nmemory estimate unavailable: {exc}", style="dim")
        else:
            self.estimate_gib = est.total_gib
            where = "VRAM" if c.device == "cuda" else "RAM"
            each = f" per GPU ({c.gpus} GPUs, data-parallel)" if c.gpus > 1 else ""
            text.append(f"\n{where} estimate ≈ {est.total_gib:.1f} GiB{each}", style="bold")
            if c.quantization == "auto":  # which base the run will load, by the run's own rule
                text.append(", base in 4-bit NF4" if resolved.config.quantization == "nf4" else ", base unquantised",
                            style="bold")
            parts = " · ".join(f"{k} {v:.1f}" for k, v in est.parts.items())
            if parts:
                text.append(f"  ({parts})", style="dim")
        text.append_text(self._max_length_text(c))
        for warning in self.warnings() + ([few] if few else []):
            text.append(f"\n⚠ {warning}", style="bold yellow")
        for warning in gpu_plan.warnings if gpu_plan else []:  # said, not asked: the run fits, others share the GPU
            text.append(f"\n⚠ {warning}", style="yellow")
        widget.update(text)

    def warnings(self) -> list[str]:
        return fit_warnings(self.config, self.report, self.estimate_gib) if self.config else []
