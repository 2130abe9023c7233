# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
# For developers: `make export` (regenerate what is generated) and `make lint` (what CI checks of the package's code).
# TORCH picks the torch build: the default pin takes the CPU wheel on CPU machines that ship it and the
# normal (CUDA) build elsewhere; e.g. `make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-notebooks test-pytest demo export lint bench

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

# Everything generated: the library from the notebooks, then the job notebooks and the README's parameter
# tables from the library's parameter sets (CI and the tests check that all three are up to date).
export: install
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(BIN)/python scripts/make_job_notebooks.py
	$(BIN)/python scripts/make_readme_tables.py
	$(BIN)/nbdev_clean --fname nbs/jobs

# Unused imports (F401), redefined (F811) and undefined (F821) names in the exported package; fix them in the
# notebooks, then `make export`. CI runs it (.ci/run).
lint: install
	$(BIN)/ruff check --select F401,F811,F821 asr_finetuner/

bench: install
	$(BIN)/python bench/preprocess_bench.py
	$(BIN)/python bench/train_bench.py
