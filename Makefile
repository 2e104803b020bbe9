# Two commands: `make run` (the whole pipeline on the built-in synthetic sample) and
# `make test` (the suite). Both create .venv from the pinned lock file on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: check-java run plots docs-images test bench bench-peers lint ui notebook clean help

help:
	@echo "make run    - create .venv, install pinned deps, run the DVC pipeline on synthetic data"
	@echo "make plots  - dvc plots show, viewable offline -> dvc_plots/index.html"
	@echo "make test   - create .venv, install pinned deps, run the test suite"
	@echo "make bench  - speed and memory benchmarks -> reports/bench.json"
	@echo "make bench-peers - served model vs an AutoML peer (AutoGluon, own venv) -> benchmarks/results/peers.md"
	@echo "make lint   - ruff"
	@echo "make ui     - MLflow UI on the local store"
	@echo "make notebook - JupyterLab on notebooks/learned_vs_manual.ipynb (after make run)"

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

# PNG images of the DVC plots, and headless-Chromium screenshots of the HTML report and of
# `dvc plots show`, for docs/images (after `make run`; Debian: apt-get install chromium)
CHROMIUM ?= chromium
SHOT = $(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--hide-scrollbars --virtual-time-budget=5000 --user-data-dir=$$(mktemp -d)
docs-images: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc plots show --json > /tmp/leadprop_plots.json
	$(BIN)/python -m pipeline.plots_page /tmp/leadprop_plots.json docs/images
	@command -v $(CHROMIUM) >/dev/null || { echo "docs-images: the screenshots need Chromium (Debian: apt-get install chromium)"; exit 1; }
	$(SHOT) --window-size=1280,3000 --screenshot=$(CURDIR)/docs/images/model_report.png file://$(CURDIR)/reports/model_report.html 2>/dev/null
	$(MAKE) plots
	$(SHOT) --window-size=1280,2400 --screenshot=$(CURDIR)/docs/images/dvc_plots.png file://$(CURDIR)/dvc_plots/index.html 2>/dev/null

# tests/spark (the Spark engine) need a Java runtime >= 17 and are skipped without one;
# `make check-java` says what to install (.ci/run installs it on CI).
test: $(STAMP) check-java
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 -q

check-java:
	@bash -c 'CI_RUN_SOURCE_ONLY=1 . .ci/run && have_java' || { \
	  echo "NOTE: no Java >= 17 on PATH: the Spark tests (tests/spark) will be SKIPPED."; \
	  echo "      Install it with: sudo apt-get install openjdk-17-jre-headless"; }

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.run

# The AutoML peer lives in its own virtualenv (pinned in benchmarks/peers/requirements.txt,
# never in requirements.lock); the two sides meet through Parquet files under
# benchmarks/peers/work/<export>/. Each step skips an export it has finished: rerun to resume,
# delete benchmarks/peers/work/<export> to redo one. About 5 minutes an export.
PEERS       := benchmarks/peers
PEER_BIN    := $(PEERS)/.venv/bin
PEER_STAMP  := $(PEERS)/.venv/.installed
PEER_EXPORTS ?= synthetic xeducation directmail

$(PEER_STAMP): $(PEERS)/requirements.txt
	test -x $(PEER_BIN)/python || $(PYTHON) -m venv $(PEERS)/.venv
	@echo "Installing the AutoML peer (AutoGluon, CPU torch) into $(PEERS)/.venv: first time takes several minutes."
	$(PEER_BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PEER_BIN)/python -m pip install --quiet --disable-pip-version-check -r $(PEERS)/requirements.txt
	touch $(PEER_STAMP)

bench-peers: $(STAMP) $(PEER_STAMP)
	@set -e; for e in $(PEER_EXPORTS); do \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.peers.harness prepare $$e; \
	  $(PEER_BIN)/python $(PEERS)/peer_autogluon.py $(PEERS)/work/$$e; \
	done
	$(BIN)/python -m benchmarks.peers.harness report

lint: $(STAMP)
	$(BIN)/ruff check .

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

# JupyterLab is 42 packages (~100 MB), so it has its own pinned lock, installed into .venv on
# first use only (constrained by requirements.lock: nothing the pipeline pins is changed).
NB_STAMP := $(VENV)/.notebook-installed
$(NB_STAMP): $(STAMP) requirements-notebook.lock
	@echo "Installing JupyterLab from requirements-notebook.lock into $(VENV) (first time only)."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-notebook.lock -c requirements.lock
	touch $(NB_STAMP)

notebook: $(NB_STAMP)
	@test -f reports/rules_comparison.csv || { echo "notebook: reports/rules_comparison.csv not found; run 'make run' first (the notebook reads the pipeline's outputs)"; exit 2; }
	$(BIN)/jupyter lab notebooks/learned_vs_manual.ipynb

clean:
	rm -rf data/raw data/interim data/features data/scored reports/* mlruns mlflow.db
