# Two commands: `make run` (the whole pipeline on the built-in synthetic sample) and
# `make test` (the suite). Both create .venv from the pinned lock file on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run plots docs-images test bench lint ui clean help

help:
	@echo "make run    - create .venv, install pinned deps, run the DVC pipeline on synthetic data"
	@echo "make plots  - dvc plots show, viewable offline -> dvc_plots/index.html"
	@echo "make test   - create .venv, install pinned deps, run the test suite"
	@echo "make bench  - speed and memory benchmarks -> reports/bench.json"
	@echo "make lint   - ruff"
	@echo "make ui     - MLflow UI on the local store"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "leadprop needs Python 3.11 or newer; got " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned dependencies from requirements.lock into $(VENV) (LightGBM, MLflow, DVC, pandas...): first time usually takes 2-5 minutes, nothing is printed meanwhile."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	@test -d .dvc || $(BIN)/dvc init --quiet --no-scm
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@$(MAKE) --no-print-directory plots
	@$(BIN)/leadprop outputs

# `dvc plots show` with Vega inlined (.dvc/plots/offline.html): no network needed
plots: $(STAMP)
	@$(BIN)/python -m pipeline.plots_page >/dev/null
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc plots show -q -o dvc_plots && echo "plots: dvc_plots/index.html"

# PNG images of the DVC plots for docs/images (after `make run`)
docs-images: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc plots show --json > /tmp/leadprop_plots.json
	$(BIN)/python -m pipeline.plots_page /tmp/leadprop_plots.json docs/images

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
