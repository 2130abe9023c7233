# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
# For developers: `make export` (regenerate what is generated) and `make lint` (what CI checks of the package's code).
# TORCH picks the torch build: the default pin takes the CPU wheel on CPU machines that ship it and the
# normal (CUDA) build elsewhere; e.g. `make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-notebooks test-pytest demo export lint bench lab screenshots

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
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		echo "NOTE: no Chromium here: the browser test (tests/test_browser.py) is skipped. Install it with: apt install chromium"
	$(BIN)/python -m pytest tests/ -n 2 --dist loadgroup --durations=15

test: test-notebooks test-pytest

demo: install
	$(BIN)/asr-finetuner demo

# JupyterLab on this machine only (127.0.0.1), in a working folder holding copies of the job notebooks.
# From a remote machine: ssh -N -L $(LAB_PORT):127.0.0.1:$(LAB_PORT) you@server, then open the printed URL locally.
LAB_DIR ?= lab
LAB_PORT ?= 8888
lab: install
	@test -f $(LAB_DIR)/train.ipynb || $(BIN)/asr-finetuner notebooks --copy $(LAB_DIR)
	@echo "JupyterLab: open the http://127.0.0.1:$(LAB_PORT)/lab?token=... URL it prints below (remote machine: see the README)."
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.root_dir=$(LAB_DIR) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# Refresh docs/screenshots/ (shown in the README) with the browser test's screenshots of the four widgets.
screenshots: install
	mkdir -p docs/screenshots
	ASR_FINETUNER_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest tests/test_browser.py -q

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
