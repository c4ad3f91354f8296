"""export --zip and --install: what GenAptitude gets, and the user's .env kept intact."""
import zipfile

import pytest

from core.cli import main


@pytest.fixture()
def adapter(tmp_path):
    a = tmp_path / "genaptitude-qwen-adapter"
    (a / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (a / "adapter_config.json").write_text('{"r": 16}')
    (a / "adapter_model.safetensors").write_bytes(b"weights")
    (a / "tokenizer.json").write_text("{}")
    (a / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"big")
    return a


def test_zip_holds_the_adapter_files_without_resume_state(adapter, tmp_path):
    assert main(["export", "--adapter", str(adapter), "--zip", str(tmp_path / "adapter.zip")]) == 0
    names = set(zipfile.ZipFile(tmp_path / "adapter.zip").namelist())
    assert {"genaptitude-qwen-adapter/adapter_config.json", "genaptitude-qwen-adapter/adapter_model.safetensors",
            "genaptitude-qwen-adapter/tokenizer.json"} == names


def test_install_sets_raise_lora_path_once_and_keeps_every_other_line(adapter, tmp_path):
    env = tmp_path / ".env"
    original = "# GenAptitude settings\nRAISE_MODEL=qwen\nRAISE_LORA_PATH=/old/one\n\nexport RAISE_LORA_PATH=/older\nPORT=8080\n"
    env.write_text(original)
    root = tmp_path / "lora"
    assert main(["export", "--adapter", str(adapter), "--install", "--lora-root", str(root),
                 "--env-file", str(env)]) == 0
    lines = env.read_text().splitlines()
    dest = root / "genaptitude-qwen-adapter"
    assert [l for l in lines if "RAISE_LORA_PATH" in l] == [f"RAISE_LORA_PATH={dest}"]
    assert lines[0] == "# GenAptitude settings" and "RAISE_MODEL=qwen" in lines and "PORT=8080" in lines and "" in lines
    assert (dest / "adapter_model.safetensors").read_bytes() == b"weights" and not (dest / "checkpoints").exists()
    backups = list(tmp_path.glob(".env.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == original


def test_export_refuses_a_folder_that_is_not_an_adapter(tmp_path, capsys):
    assert main(["export", "--adapter", str(tmp_path), "--zip", str(tmp_path / "x.zip")]) == 2
    assert "not an adapter folder" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()
