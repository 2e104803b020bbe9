# Two commands: `make run` (the whole pipeline on the built-in synthetic sample) and
# `make test` (the suite). Both create .venv from the pinned lock file on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint ui clean help

help:
	@echo "make run    - create .venv, install pinned deps, run the DVC pipeline on synthetic data"
	@echo "make test   - create .venv, install pinned deps, run the test suite"
	@echo "make bench  - speed and memory benchmarks -> reports/bench.json"
	@echo "make lint   - ruff"
	@echo "make ui     - MLflow UI on the local store"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "leadprop needs Python 3.11 or newer; got " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	@test -d .dvc || $(BIN)/dvc init --quiet --no-scm
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@$(BIN)/leadprop outputs

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check .

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf data/raw data/interim data/features data/scored reports/* mlruns mlflow.db
