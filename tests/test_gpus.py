"""Which GPUs a run uses (core/gpus.py) on boxes with several GPUs, from fake NVML data: the freest one by default,
--gpu-ids honoured and checked, --gpus N the N freest, the user's CUDA_VISIBLE_DEVICES respected, busy GPUs warned."""
from __future__ import annotations

import pytest

from core import gpus, hardware
from core.errors import InputError
from core.hardware import GpuInfo, GpuProcess
from tests.fake_nvml.pynvml import FakeNvml

H200 = 139.8


def h200(i: int, used: float, others: list[GpuProcess] | None = None) -> GpuInfo:
    return GpuInfo(i, "NVIDIA H200", total_gib=H200, free_gib=H200 - used, used_gib=used, compute_capability=(9, 0),
                   bf16=True, uuid=f"GPU-{i}aaa{i}-1111-2222", others=others or [])


# GPU 0 holds another user's 60 GiB job; GPU 1 is idle; GPU 2 has a small notebook on it; GPU 3 is idle.
BOX = [h200(0, 60.2, [GpuProcess(4242, 59.7)]), h200(1, 0.6), h200(2, 8.0, [GpuProcess(77, 7.4)]), h200(3, 0.5)]


def test_one_gpu_run_takes_the_freest_and_says_why():
    p = gpus.choose(BOX[:2])
    assert p.ids == (1,)
    assert p.env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"}
    assert p.reason == "GPU 1 (NVIDIA H200): the most free memory of 2 GPUs, 139.2 GiB free (GPU 0 79.6 GiB free)"
    assert p.warnings == []  # the GPU it runs on is idle: nothing to warn about


def test_gpus_n_takes_the_n_freest_in_nvml_order():
    p = gpus.choose(BOX, count=2)
    assert p.ids == (1, 3)
    assert p.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert p.reason.startswith("GPUs 1, 3: the 2 with the most free memory of 4")
    assert gpus.choose(BOX, count=4).reason == "all 4 GPUs: 0, 1, 2, 3"


def test_gpu_ids_are_honoured_even_on_a_busy_gpu_with_a_warning_in_numbers():
    p = gpus.choose(BOX, ids=(0, 2))
    assert p.ids == (0, 2) and p.env["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert p.reason == "GPUs 0, 2, as asked (--gpu-ids 0,2)"
    assert p.warnings == [
        "GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have 79.6 GiB",
        "GPU 2 has 8.0 of 139.8 GiB in use by 1 other process; the run would have 131.8 GiB",
    ]


def test_a_busy_gpu_that_cannot_hold_the_run_says_it_would_run_out_of_memory():
    p = gpus.choose(BOX, ids=(0,), need_gib=90.0)
    assert p.warnings == ["GPU 0 has 60.2 of 139.8 GiB in use by 1 other process; the run would have 79.6 GiB, "
                          "less than the ≈ 90.0 GiB it needs: it would run out of memory"]


def test_memory_held_by_processes_nvml_does_not_list_warns_but_a_desktop_display_does_not():
    hidden = GpuInfo(0, "NVIDIA H200", total_gib=H200, free_gib=79.6, used_gib=60.2, compute_capability=(9, 0),
                     bf16=True)
    assert gpus.busy_warning(hidden) == ("GPU 0 has 60.2 of 139.8 GiB in use by processes NVML does not list "
                                         "(another container?); the run would have 79.6 GiB")
    desktop = GpuInfo(0, "NVIDIA GeForce RTX 3060", total_gib=8.0, free_gib=6.5, used_gib=1.5,
                      compute_capability=(8, 6), bf16=True)
    assert gpus.busy_warning(desktop) is None


def test_an_unknown_gpu_id_is_refused_with_the_ids_that_exist():
    with pytest.raises(InputError) as e:
        gpus.choose(BOX[:2], ids=(1, 3))
    assert e.value.exit_code == 2
    assert e.value.message == "--gpu-ids 1,3: GPU 3 is not here; the GPUs are 0, 1"


def test_more_gpus_than_there_are_is_refused():
    with pytest.raises(InputError) as e:
        gpus.choose(BOX[:2], count=3)
    assert e.value.message == "3 GPUs asked for, but 2 are here: 0, 1"
    assert "--gpus 2" in e.value.hint


def test_the_users_cuda_visible_devices_limits_the_candidates_and_keeps_real_indices():
    p = gpus.choose(BOX, visible="2,0")  # GPU 1 and 3 are free, but the user gave us 2 and 0
    assert [g.index for g in p.candidates] == [2, 0]
    assert p.ids == (2,)
    assert p.env["CUDA_VISIBLE_DEVICES"] == "2"
    assert "(CUDA_VISIBLE_DEVICES=2,0)" in p.reason and p.reason.startswith("GPU 2 (NVIDIA H200)")
    with pytest.raises(InputError) as e:
        gpus.choose(BOX, ids=(1,), visible="2,0")
    assert e.value.message == "--gpu-ids 1: GPU 1 is not here (CUDA_VISIBLE_DEVICES=2,0); the GPUs are 2, 0"


def test_cuda_visible_devices_may_name_gpus_by_uuid_or_prefix():
    p = gpus.choose(BOX, visible="GPU-3aaa3-1111-2222,GPU-0aaa")
    assert [g.index for g in p.candidates] == [3, 0]
    assert p.ids == (3,) and p.env["CUDA_VISIBLE_DEVICES"] == "3"
    # CUDA stops at the first entry it cannot match; so do we
    assert [g.index for g in gpus.choose(BOX, visible="1,7,2").candidates] == [1]


def test_mig_devices_and_an_empty_variable():
    p = gpus.choose(BOX, visible="MIG-1234")
    assert p.env == {} and "left as set" in p.reason  # the user's value stays; we cannot map it
    hidden = gpus.choose(BOX, visible="")  # the usual way to keep a CPU job off the GPUs: still allowed
    assert hidden.ids == () and hidden.env == {}
    assert hidden.reason == "no GPU is visible (CUDA_VISIBLE_DEVICES=): the GPUs are hidden from this run"
    with pytest.raises(InputError, match="no GPU is visible"):
        gpus.choose(BOX, visible="-1", ids=(0,))


def test_no_gpu_is_a_plan_with_the_reason_but_gpu_ids_there_are_refused():
    p = gpus.choose([], why_none="NVIDIA driver library (libnvidia-ml) not found")
    assert p.ids == () and p.env == {}
    assert p.reason == "no GPU: NVIDIA driver library (libnvidia-ml) not found"
    with pytest.raises(InputError, match="--gpu-ids 0: no GPU here"):
        gpus.choose([], ids=(0,))


def test_a_pinned_plan_chosen_again_is_the_same():
    """A launcher's workers and the TUI's run process choose again under the pinned variable: same GPUs."""
    for kw in ({}, {"count": 2}, {"ids": (2, 0)}):
        first = gpus.choose(BOX, **kw)
        again = gpus.choose(BOX, visible=first.env["CUDA_VISIBLE_DEVICES"], **kw)
        assert again.ids == first.ids


def test_parse_ids():
    assert gpus.parse_ids("1,3") == (1, 3)
    assert gpus.parse_ids(" 0 ") == (0,)
    with pytest.raises(ValueError, match="'x' is not a GPU index"):
        gpus.parse_ids("1,x")
    with pytest.raises(ValueError, match="GPU 1 is named twice"):
        gpus.parse_ids("1,1")


def test_nvml_index_maps_cuda_ordinals_to_real_gpus():
    assert gpus.nvml_index(0, {}) == 0
    assert gpus.nvml_index(0, {"CUDA_VISIBLE_DEVICES": "1"}) == 1
    assert gpus.nvml_index(1, {"CUDA_VISIBLE_DEVICES": "3,1"}) == 1


@pytest.fixture
def fake_nvml(monkeypatch):
    """core.hardware reads these GPUs through the same NVML calls it makes on a real box."""
    def install(gpu_list: list[dict]):
        monkeypatch.setattr(hardware, "_state", {"ready": True, "error": None, "module": FakeNvml(gpu_list)})
    return install


def test_probe_reads_memory_uuid_and_other_processes_from_nvml(fake_nvml, monkeypatch):
    fake_nvml([{"total_gib": H200, "used_gib": 60.2, "processes": [[4242, 59.7], [4243, None]]},
               {"total_gib": H200, "used_gib": 0.6, "uuid": "GPU-abcd"}])
    report = hardware.probe()
    g0, g1 = report.gpus
    assert (g0.index, round(g0.free_gib, 1), len(g0.others)) == (0, 79.6, 2)
    assert round(g0.others_gib, 1) == 60.2  # one process's memory unknown: the device's used memory stands in
    assert g1.uuid == "GPU-abcd" and g1.others == []
    assert gpus.describe(g0) == "GPU 0: NVIDIA H200, 79.6 of 139.8 GiB free; 2 other processes hold 60.2 GiB"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpus.plan().ids == (1,)


def test_pin_sets_the_variables_in_the_environment_it_is_given():
    env: dict[str, str] = {}
    assert gpus.pin(gpus.choose(BOX, count=2), env)
    assert env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1,3"}


def test_a_gpu_nvml_cannot_read_is_named_and_the_others_still_listed(fake_nvml):
    from tui.widgets.hardware import report_text

    fake_nvml([{"total_gib": H200, "used_gib": 0.6}, {"total_gib": H200, "used_gib": 0.6, "lost": True},
               {"total_gib": H200, "used_gib": 1.0}])
    report = hardware.probe()
    assert [g.index for g in report.gpus] == [0, 2]
    assert report.nvml_error == ("NVML could not read GPU 1 (GPU is lost); only the GPUs it could read are listed")
    assert "NVML could not read GPU 1" in report_text(report, {}).plain
    assert [s.index for s in hardware.sample()] == [0, 2]  # the panel's read too, without raising


def test_the_tui_pinned_for_evaluate_still_lets_its_next_run_choose_afresh(monkeypatch, tmp_path):
    """The TUI process pins itself to one GPU for evaluate/chat; its next run process must not inherit that as the
    user's CUDA_VISIBLE_DEVICES (it would see one GPU only)."""
    import core.runs.workers
    from core.presets import config_for
    from tui.bridge import ProcessEngine

    for name in gpus.PIN_VARS:  # set then unset: monkeypatch then also takes back what pin() sets below
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(gpus, "_user_env", None)
    assert gpus.pin(gpus.choose(BOX))  # what RealEngine._one_gpu does before an evaluation
    assert gpus.user_env() == {"CUDA_VISIBLE_DEVICES": None, "CUDA_DEVICE_ORDER": None}
    import os
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"  # the freest of BOX

    seen: list[dict] = []

    def start_run(config, dataset, output, *, env, **kw):  # the detached run process the app would start
        seen.append(env)
        raise core.runs.workers.TrainerError("not started in this test")

    monkeypatch.setattr(core.runs.workers, "start_run", start_run)
    with pytest.raises(core.runs.workers.TrainerError):
        ProcessEngine().train(config_for("cpu"), "d.jsonl", str(tmp_path / "out"), on_event=lambda e: None,
                              stop_event=None)
    assert "CUDA_VISIBLE_DEVICES" not in seen[0] and "CUDA_DEVICE_ORDER" not in seen[0]


def test_a_runs_memory_reading_asks_only_its_own_gpu(fake_nvml):
    """Read at every logged step (core/train/memory.py): one GPU's memory, not every GPU's name, load and
    temperature; a lost GPU elsewhere on the box does not matter, an index NVML lacks gives nothing."""
    gpus = [{"total_gib": H200, "used_gib": 10.0}, {"total_gib": H200, "used_gib": 1.0, "lost": True},
            {"total_gib": H200, "used_gib": 30.5}]
    fake_nvml(gpus)
    used, total = hardware.nvml_used_gib(2)
    assert used == pytest.approx(30.5) and total == pytest.approx(H200)
    assert [g.get("handles", 0) for g in gpus] == [0, 0, 1]
    assert hardware.nvml_used_gib(1) == (None, None)
    assert hardware.nvml_used_gib(7) == (None, None)


def test_gpu_ids_set_the_gpu_count_by_one_rule(capsys):
    """core.presets.gpu_count: the flags (train's two readings of them), the config and the TUI agree."""
    from core.cli import build_parser, main
    from core.cli.train import resolve_config
    from core.presets import config_for, gpu_count, gpu_ids_mismatch

    assert gpu_count(None, (1, 3)) == 2 and gpu_count(2, ()) == 2 and gpu_count(None, ()) is None
    assert resolve_config(build_parser().parse_args(["train", "--preset", "modern-bf16", "--gpu-ids", "1,3"])).gpus == 2
    assert gpu_ids_mismatch(2, (0,)) == "gpus is 2 but gpu ids name 1 GPU(s)"
    assert main(["train", "--preset", "cpu", "--gpus", "2", "--gpu-ids", "0", "--dataset", "none.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "gpus is 2 but gpu ids name 1 GPU(s)" in err and "give --gpu-ids alone" in err
    problems = [p.message for p in _problems(config_for("modern-bf16", gpus=2, gpu_ids=(0,)))]
    assert "gpus is 2 but gpu ids name 1 GPU(s)" in problems


def _problems(config):
    from core.errors import InputError

    try:
        config.validate()
    except InputError as exc:
        return exc.problems
    return []
