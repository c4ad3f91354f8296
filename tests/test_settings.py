"""Settings defined once: TrainConfig's field metadata makes the CLI flags and the TUI's fields, validation names
the field of each problem, presets say how much GPU memory they need and `suggest` reads it."""
from __future__ import annotations

from dataclasses import fields

import pytest

from core.errors import InputError
from core.hardware import GpuInfo, HardwareReport
from core.presets import PRESETS, SETTINGS, TrainConfig, config_for, config_from_dict
from core.suggest import suggest


def _gpu(free: float, cc: tuple[int, int] | None, total: float = 16.0, name: str = "GPU") -> HardwareReport:
    bf16 = cc is not None and cc >= (8, 0)
    return HardwareReport(gpus=[GpuInfo(0, name, total_gib=total, free_gib=free, used_gib=total - free,
                                        compute_capability=cc, bf16=bf16)], torch_cuda=True)


# (free GiB, compute capability) -> the preset suggested today; the presets' min_vram_gib must keep these.
SUGGESTIONS = [
    (3.9, (9, 0), "cpu"), (3.9, (7, 5), "cpu"), (4.0, (8, 6), "8gb"), (11.9, (8, 9), "8gb"),
    (12.0, (8, 0), "modern-bf16"), (79.0, (9, 0), "modern-bf16"), (4.0, (7, 5), "t4-fp16"),
    (4.5, (7, 5), "t4-fp16"), (14.5, (7, 0), "t4-fp16"), (4.0, (6, 1), "t4-fp32"), (22.0, (6, 1), "t4-fp32"),
    (8.0, None, "t4-fp32"),
]


@pytest.mark.parametrize("free,cc,preset", SUGGESTIONS)
def test_suggestion_by_free_memory_and_compute_capability(free, cc, preset):
    assert suggest(_gpu(free, cc)).preset == preset


def test_suggest_reads_each_presets_min_vram(monkeypatch):
    """The thresholds are the presets' own min_vram_gib, not numbers written in `suggest`."""
    from dataclasses import replace

    from core import presets

    assert suggest(_gpu(12.0, (8, 0))).preset == "modern-bf16"
    monkeypatch.setitem(presets.PRESETS, "modern-bf16", replace(presets.PRESETS["modern-bf16"], min_vram_gib=20.0))
    assert suggest(_gpu(12.0, (8, 0))).preset == "8gb"
    monkeypatch.setitem(presets.PRESETS, "8gb", replace(presets.PRESETS["8gb"], min_vram_gib=13.0))
    s = suggest(_gpu(12.0, (8, 0)))
    assert s.preset == "cpu" and s.reason.endswith("a 1.5B QLoRA run needs ~13 GiB")


# -- every field is a flag, with help; the flags land in the config ------------------------------------------------
def _train_parser():
    from core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def _other_value(s):
    """A value for `s`'s flag that differs from the cpu preset's, as (argv, expected config value)."""
    current = getattr(PRESETS["cpu"].config, s.name)
    if s.kind is bool:
        return [f"--no-{s.flag[2:]}" if current else s.flag], not current
    if s.choices:
        pick = next(c for c in s.choices if c != current)
        return [s.flag, pick], pick
    if s.name == "gpu_ids":
        return [s.flag, "1,3"], (1, 3)
    if s.kind is tuple:
        return [s.flag, "q_proj, v_proj"], ("q_proj", "v_proj")
    if s.kind is str:
        return [s.flag, "some/model"], "some/model"
    value = s.kind(current + 2)
    return [s.flag, str(value)], value


def test_every_field_has_a_train_flag_with_help_and_the_flag_sets_it():
    from core.cli.train import resolve_config

    parser = _train_parser()
    flags = {o: a for a in parser._actions for o in a.option_strings}
    assert [f.name for f in fields(TrainConfig)] == list(SETTINGS)
    for s in SETTINGS.values():
        assert s.help.strip(), f"{s.name} has no help text"
        assert s.flag in flags and flags[s.flag].dest == s.name and flags[s.flag].help
        argv, expected = _other_value(s)
        if s.name == "preset":
            argv = ["--preset", "8gb"]
            expected = "8gb"
        else:
            argv = ["--preset", "cpu", *argv]
        config = resolve_config(parser.parse_args(argv))
        assert getattr(config, s.name) == expected, (s.name, argv)
    text = " ".join(parser.format_help().split())
    assert "keep-answer cuts the input in its middle" in text and "model and precision" in text


def test_the_flags_users_know_keep_their_spelling():
    """README and the tests use these; generating them from TrainConfig must not rename any."""
    flags = {o for a in _train_parser()._actions for o in a.option_strings}
    known = ("--epochs --max-steps --batch-size --batch-tokens --grad-accum --lr --lr-scheduler --warmup-steps "
             "--max-length --truncation --lora-r --lora-alpha --lora-dropout --lora-targets --save-every "
             "--save-every-minutes --eval-fraction --eval-every --seed --quantization --optimizer "
             "--gradient-checkpointing --no-gradient-checkpointing --tensorboard --gpu-memory-fraction --gpus "
             "--gpu-batch --gpu-ids --min-updates --score-rows --score-seconds --model --preset --trust-remote-code "
             "--dataset --output --overwrite --resume --skip-invalid --json --config-json --detached").split()
    assert [f for f in known if f not in flags] == []


def test_gpus_all_and_gpu_ids_keep_their_own_parsing():
    from core.cli.train import resolve_config

    args = _train_parser().parse_args(["--preset", "8gb", "--gpu-ids", "2,0"])
    assert resolve_config(args).gpu_ids == (2, 0) and resolve_config(args).gpus == 2  # --gpu-ids sets the count
    for bad in (["--gpus", "two"], ["--gpus", "0"], ["--gpu-ids", "one"]):
        with pytest.raises(SystemExit):
            _train_parser().parse_args(bad)


# -- validation names the field; one coercion for flags, the TUI and run.json ------------------------------------------
def test_each_validation_problem_names_its_field():
    bad = config_for("cpu", batch_size=0, lr=5.0, lora_r=0, truncation="middle", autocast="fp16", epochs=0,
                     max_steps=-1, gpu_ids=(0,))
    with pytest.raises(InputError) as info:
        bad.validate()
    by_field = {p.field: p.message for p in info.value.problems}
    assert set(by_field) == {"truncation", "batch_size", "lr", "lora_r", "epochs", "autocast"}
    assert by_field["truncation"] == "truncation must be keep-answer, right or drop, not 'middle'"
    assert by_field["epochs"] == "nothing to train: epochs and max steps are both 0"
    assert by_field["autocast"] == "fp16 autocast needs a GPU"
    assert all(p.field in SETTINGS for p in info.value.problems)
    assert info.value.to_dict()["problems"][0]["field"] == info.value.problems[0].field


def test_config_for_and_config_from_dict_coerce_alike():
    for make in (lambda **kw: config_for("cpu", **kw), lambda **kw: config_from_dict({**CPU, **kw})):
        with pytest.raises(InputError, match="unknown setting"):
            make(lora_rank=8)
        assert make(lora_targets="q_proj, v_proj,").lora_targets == ("q_proj", "v_proj")
        assert make(lora_targets=["q_proj"]).lora_targets == ("q_proj",)
        assert make(gpu_ids=[1, 3]).gpu_ids == (1, 3)
    assert config_from_dict(PRESETS["modern-bf16"].config.to_dict()) == PRESETS["modern-bf16"].config


CPU = PRESETS["cpu"].config.to_dict()


# -- the TUI puts each problem on its field, by Problem.field -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.anyio
async def test_a_validation_problem_lands_on_the_field_it_names(tmp_path, monkeypatch):
    from textual.widgets import Input

    from core.errors import Problem
    from tests.tui_fakes import NO_GPU, FakeEngine, settle, static_text
    from tui.app import TrainerApp

    app = TrainerApp(FakeEngine(NO_GPU), output=str(tmp_path / "adapter"), refresh_interval=None, stats_delay=0,
                     show_startup_time=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        epochs = app.query_one("#field-epochs", Input)
        epochs.focus()
        await pilot.pause()
        assert static_text(app, "#why") == "epochs: passes over the training rows"  # its help: cpu gives no reason
        await pilot.press("end", *["backspace"] * 4, "0")
        assert epochs.value == "0"
        assert static_text(app, "#msg-epochs") == "nothing to train: epochs and max steps are both 0"
        assert static_text(app, "#msg-max_steps") == "" and static_text(app, "#general") == ""

        # Only the field a problem names places it: not its words (a problem of a field the panel does not show
        # goes under the fields)
        def validate(self):
            raise InputError("2 problem(s)", problems=[Problem("too many adapters for this card", field="lora_r"),
                                                       Problem("this card has no bf16", field="autocast")])

        monkeypatch.setattr(TrainConfig, "validate", validate)
        await pilot.press("backspace", "1")
        await pilot.pause()
        assert static_text(app, "#msg-lora_r") == "too many adapters for this card"
        assert static_text(app, "#msg-epochs") == ""
        assert static_text(app, "#general") == "this card has no bf16"
        assert app.presets.config is None


def test_check_measures_with_trains_own_defaults():
    """`check` without flags measures rows against the max length and truncation TrainConfig defines (it held a
    copy of each)."""
    from core.cli import build_parser
    from core.presets import TrainConfig

    args = build_parser().parse_args(["check", "dataset.jsonl"])
    assert (args.max_length, args.truncation) == (TrainConfig().max_length, TrainConfig().truncation)
