"""The headless CLI as a user runs it: exit codes, messages with line numbers, nothing written on bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

BROKEN = {
    "invalid_json": (b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a", "output": \n', 2),
    "not_object": (b'{"instruction": "a", "input": "", "output": "b"}\n[1, 2]\n', 2),
    "missing_field": (b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a", "input": ""}\n', 2),
    "non_string": (b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a", "input": "", "output": 3}\n', 2),
    "empty_answer": (b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a", "input": "", "output": "  "}\n', 2),
    "mixed_shapes": (b'{"instruction": "a", "input": "", "output": "b"}\n{"text": "hello"}\n', 2),
    "bad_utf8": (b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "\xe9t\xe9", "input": "", "output": "b"}\n', 2),
    "nul_bytes": (b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a\x00", "input": "", "output": "b"}\n', 2),
    "deep_nesting": (b'{"instruction": "a", "input": "", "output": "b"}\n' + b"[" * 100000 + b"]" * 100000 + b"\n", 2),
}


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_and_train_refuse_broken_files_with_the_line(name, tmp_path):
    data, line = BROKEN[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(data)
    for args in (["check", str(path), "--no-tokens"],
                 ["train", "--dataset", str(path), "--preset", "cpu", "--output", str(tmp_path / "out")]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"{path}:{line}:" in r.stderr, r.stderr
        assert "fix:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_empty_file_and_directory_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\r\n\n")
    r = cli("check", str(empty), "--no-tokens")
    assert r.returncode == 2 and "empty" in r.stderr and "ai_export_dataset" in r.stderr
    r = cli("check", str(tmp_path), "--no-tokens")
    assert r.returncode == 2 and "directory" in r.stderr and "Traceback" not in r.stderr


def test_more_than_twenty_bad_lines_are_counted(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text('{"instruction": "a", "input": "", "output": "b"}\n' + "not json\n" * 25, encoding="utf-8")
    r = cli("check", str(path), "--no-tokens")
    assert r.returncode == 2
    assert f"{path}:2:" in r.stderr and f"{path}:21:" in r.stderr and f"{path}:22:" not in r.stderr
    assert "and 5 more" in r.stderr and "--skip-invalid" in r.stderr


def test_skip_invalid_reports_what_it_skipped(tmp_path):
    path = tmp_path / "some.jsonl"
    path.write_text('{"instruction": "a", "input": "", "output": "b"}\nnot json\n', encoding="utf-8")
    r = cli("check", str(path), "--no-tokens", "--skip-invalid", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] == 1 and out["skipped"][0]["line"] == 2


def test_check_windows_export_with_bom_and_crlf(tmp_path):
    lines = (ROOT / "dataset.jsonl").read_text(encoding="utf-8").splitlines()[:5]
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines + [""]).encode("utf-8") + b"\r\n")
    r = cli("check", str(path), "--no-tokens")
    assert r.returncode == 0, r.stderr
    assert "5 valid rows" in r.stdout and "GenAptitude" in r.stdout


@pytest.mark.slow
def test_check_shows_token_stats_and_the_trained_text(tmp_path):
    r = cli("check", str(ROOT / "dataset.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] == 240 and out["format"] == "alpaca"
    t = out["tokens"]
    assert 0 < t["min"] <= t["median"] <= t["p95"] <= t["max"] and t["over_max"] == 0
    first = json.loads((ROOT / "dataset.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert out["sample"]["trained_text"] == first["output"] + "<|im_end|>\n"
    assert first["instruction"] in out["sample"]["text"] and "<|im_start|>assistant" in out["sample"]["text"]


@pytest.mark.slow
def test_doctor_without_gpu_suggests_cpu():
    r = cli("doctor")
    assert r.returncode == 0, r.stderr
    assert "no GPU" in r.stdout and "suggested preset: cpu" in r.stdout
    from core.hardware import cpu_amx_bf16  # (this machine's answer: the line says what its runs will do)

    assert ("CPU: AMX bf16 units: the cpu preset trains in bf16 (--no-cpu-bf16: fp32)" if cpu_amx_bf16() else
            "CPU: no AMX bf16 units: the cpu preset trains in fp32 (bf16 would be slower here)") in r.stdout
    # what the run will choose, from core/train/resolve.py (as the run and the TUI's preset tab)
    assert f"a cpu run here computes in {'bf16 autocast' if cpu_amx_bf16() else 'fp32'}" in r.stdout
    r = cli("doctor", "--json")
    assert json.loads(r.stdout)["suggested_preset"] == "cpu" and json.loads(r.stdout)["cpu_amx_bf16"] == cpu_amx_bf16()


def test_presets_list_gives_a_reason_for_values():
    r = cli("presets")
    assert r.returncode == 0
    for name in ("modern-bf16", "8gb", "t4-fp16", "t4-fp32", "cpu"):
        assert f"{name}:" in r.stdout
    assert "grad scaler" in r.stdout


@pytest.mark.slow
def test_train_json_stream_is_one_event_per_line(tiny_model_dir, small_dataset, tmp_path):
    began = time.time()
    r = cli("train", "--dataset", str(small_dataset), "--preset", "cpu", "--model", str(tiny_model_dir),
            "--max-steps", "2", "--output", str(tmp_path / "out"), "--json")
    took = time.time() - began
    assert r.returncode == 0, r.stderr
    events = [json.loads(l) for l in r.stdout.splitlines()]  # every stdout line is an event
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "finished" and kinds.count("step") == 2 and "run_started" in kinds
    assert events[-1]["output_dir"] == str((tmp_path / "out").resolve())

    # the start-up, said once and kept: from the command's start (its imports too) to training, to the first step
    said = [e["message"] for e in events if e["event"] == "log" and e["message"].startswith("start-up:")]
    startup = json.loads((tmp_path / "out" / "run.json").read_text())["startup"]
    assert said == [f"start-up: first step done {startup['to_first_step_s']:.1f} s after the command began "
                    f"(imports, model and data {startup['to_training_s']:.1f} s, the first step "
                    f"{startup['to_first_step_s'] - startup['to_training_s']:.1f} s)"]
    assert 1.0 < startup["to_training_s"] < startup["to_first_step_s"] < took  # importing torch alone takes >1 s
    steps = [i for i, e in enumerate(events) if e["event"] == "step"]
    assert steps[0] < events.index(next(e for e in events if e.get("message", "").startswith("start-up:")))


@pytest.mark.slow
def test_gpu_preset_on_cpu_machine_exits_2(small_dataset, tmp_path):
    r = cli("train", "--dataset", str(small_dataset), "--preset", "t4-fp16", "--output", str(tmp_path / "o"))
    assert r.returncode == 2 and "needs an NVIDIA GPU" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_a_missing_or_broken_file_given_on_the_command_line_is_one_sentence(small_dataset, tmp_path):
    missing = tmp_path / "settings.json"
    r = cli("train", "--config-json", str(missing), "--dataset", str(small_dataset), "--output", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == f"error: {missing}: No such file or directory"
    missing.write_text("{preset: cpu")
    r = cli("train", "--config-json", str(missing), "--dataset", str(small_dataset), "--output", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: JSONDecodeError: Expecting property name enclosed in double quotes: line 1")


def test_a_bug_keeps_its_traceback_with_the_sentence_on_the_last_line(monkeypatch, capsys):
    from core import cli as cli_module

    def broken(args):
        return {}["preset"]

    monkeypatch.setitem(cli_module.COMMANDS, "presets", broken)
    assert cli_module.main(["presets"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):" and "return {}[\"preset\"]" in "\n".join(err)
    assert err[-1] == ("error: KeyError: 'preset' (a bug in genaptitude-trainer: please report it with the traceback "
                       "above)")
