"""Shared fixtures: tiny real models and tokenizers built locally (nothing downloads)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs the tests start are remembered in a throwaway run index, never in the user's own (core/runs/history.py).
os.environ.setdefault("GENAPTITUDE_TRAINER_HOME", tempfile.mkdtemp(prefix="genaptitude-trainer-home-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers (pytest-xdist). Each has its own run index: the other worker's live runs are not
    # this one's to offer or attach. And one torch thread each, for them and the runs they start: two workers of two
    # threads on two cores spin-wait on each other (a 2 s tiny-model test took 70 s).
    os.environ["GENAPTITUDE_TRAINER_HOME"] = tempfile.mkdtemp(
        prefix=f"genaptitude-trainer-home-{os.environ['PYTEST_XDIST_WORKER']}-")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests import runfolders  # noqa: E402
from tests.tinymodels import BUNDLED_DATASET, ROOT, build_tiny_model, build_tokenizer, dataset_texts  # noqa: E402

__all__ = ["ROOT", "BUNDLED_DATASET", "build_tokenizer", "build_tiny_model", "dataset_texts"]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer(dataset_texts())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), tiny_tokenizer, arch="qwen2")


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """The first 40 rows of the bundled export: enough for a few steps and a held-out split."""
    lines = BUNDLED_DATASET.read_text(encoding="utf-8").splitlines()[:40]
    path = tmp_path_factory.mktemp("data") / "dataset.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2 tokenizer (converted once from the GGUF the set-up installs); skips without it."""
    from core.errors import InputError
    from core.models import resolve, tokenizer_from

    try:
        return tokenizer_from(resolve("smollm2-135m-instruct"))
    except InputError as exc:
        pytest.skip(f"bundled model unavailable: {exc.message}")


@pytest.fixture
def anyio_backend():
    """The Textual app tests (pytest.mark.anyio) run on asyncio, as the app does."""
    return "asyncio"


@pytest.fixture
def utc():
    """Times shown in local time are fixed to UTC: the same numbers and snapshots everywhere."""
    yield from runfolders.utc_clock()


@pytest.fixture
def runs(tmp_path, monkeypatch, utc) -> Path:
    """A working folder `runs/` with a finished, a stopped, an unfinished and a broken run, and junk around them."""
    return runfolders.some_runs(tmp_path, monkeypatch)


#: The longest tests start first, so that two workers end together (pytest-xdist's worksteal takes the rest).
LONGEST_FIRST = ("tests/test_learning.py", "tests/test_gguf.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: next((i for i, f in enumerate(LONGEST_FIRST) if item.nodeid.startswith(f)),
                                     len(LONGEST_FIRST)))
