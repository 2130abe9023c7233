# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
# TORCH picks the torch build: the default pin takes the CPU wheel on CPU machines that ship it and the
# normal (CUDA) build elsewhere; e.g. `make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-notebooks test-pytest demo export clean-nbs check-sync bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first: an already-satisfied `torch>=` in the requirements then installs nothing more.
$(STAMP): $(BIN)/python setup.py settings.ini
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test-notebooks: install
	$(BIN)/nbdev_test --n_workers 2 --timing

test-pytest: install
	$(BIN)/python -m pytest tests/ -n 2 --durations=15

test: test-notebooks test-pytest

demo: install
	$(BIN)/asr-finetuner demo

export: install
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export

bench: install
	$(BIN)/python bench/preprocess_bench.py
	$(BIN)/python bench/train_bench.py
