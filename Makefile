# flatcast: two commands do everything.
#   make book   execute every chapter (papermill, quick profile by default) and render _build/html
#   make test   unit tests + one test per chapter (quick profile)
# Both create .venv from requirements.txt when it is missing (seconds when it is already there).
#
# Options: PROFILE=quick|paper  CHAPTERS="intro data"  FORCE=1 (re-execute)  DEVICE=cpu|cuda  SEED=0
#          TIMEOUT=<s per chapter>  DATA=<folder with the dataset CSVs> (sets FLATCAST_DATA)
#          PYTEST_ARGS="-k data"  BENCH_ARGS="--threads 2" (make benchmark)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.flatcast-ready
WIDGETS := node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js
PROFILE ?= quick
CHAPTERS ?=
FORCE ?=
DEVICE ?=
SEED ?=
TIMEOUT ?=
PYTEST_ARGS ?=
ifneq ($(strip $(DATA)),)
export FLATCAST_DATA := $(abspath $(DATA))
endif

BOOK_ARGS := --profile $(PROFILE) $(if $(strip $(CHAPTERS)),--chapters "$(CHAPTERS)") $(if $(FORCE),--force) \
             $(if $(DEVICE),--device $(DEVICE)) $(if $(SEED),--seed $(SEED)) $(if $(TIMEOUT),--timeout $(TIMEOUT))

.PHONY: book test browser venv widgets strip check-stripped benchmark benchmark-grid gpu-prepare clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(VPY) || { echo "== creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(VPY) -m ipykernel install --sys-prefix --name flatcast --display-name "Python 3 (flatcast)"
	@touch $(STAMP)

widgets: $(WIDGETS)

$(WIDGETS): package.json package-lock.json | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; \
	else \
	  echo "npm not found: fetching the pinned packages from the npm registry with scripts/fetch_widget_assets.py"; \
	  $(VPY) scripts/fetch_widget_assets.py; \
	fi
	@test -f $@ && touch $@

book: $(STAMP) $(WIDGETS)
	$(VPY) scripts/build_book.py build $(BOOK_ARGS)

test: $(STAMP)
	MPLBACKEND=Agg $(VPY) -m pytest -m "not browser" $(PYTEST_ARGS)

# Opens every built page in headless Chromium (run after `make book`); screenshots in _build/screenshots/.
# Moves every explorer's controls on the page loaded from file:// with the network blocked (Playwright from
# requirements.txt driving the system chromium) and checks the page-weight budgets; -rs lists what was skipped.
browser: $(STAMP)
	$(VPY) -m pytest -m browser -rs $(PYTEST_ARGS)

strip: $(STAMP)
	$(VPY) scripts/build_book.py strip

check-stripped: $(STAMP)
	$(VPY) scripts/build_book.py strip --check

# Training speed: single run, batched members (k = 1, 5, 10, 20) and the official port, in one run.
# BENCH_ARGS="--threads 2 --steps 200" (see scripts/benchmark_training.py --help)
BENCH_ARGS ?=
benchmark: $(STAMP)
	FLATCAST_DATA="$${FLATCAST_DATA:-../shared/data}" $(VPY) scripts/benchmark_training.py $(BENCH_ARGS)

# Resumable paper grids on Ray (data/results/benchmark/): make benchmark-grid GRID=samformer-table1 [DEVICE=cuda]
#   [GRID_ARGS="--datasets ETTh1 --horizons 96 --workers 4 --gpu-fraction 0.25"]; rerun the same command to resume.
GRID ?= samformer-table1
GRID_ARGS ?=
benchmark-grid: $(STAMP)
	$(VPY) -m flatcast.benchmark run --grid $(GRID) $(if $(DEVICE),--device $(DEVICE)) $(GRID_ARGS)
	$(VPY) -m flatcast.benchmark status --grid $(GRID)
	$(VPY) -m flatcast.experiments.benchmark --profile paper

# Copy the dataset CSVs (sha256-checked) into .gpu/data, which the device tool carries (scripts/gpu_session.sh)
gpu-prepare: $(STAMP)
	FLATCAST_DATA="$${FLATCAST_DATA:-../shared/data}" $(VPY) -c "from flatcast.data.registry import stage_datasets; \
	[print(f'{k}: {v}') for k, v in stage_datasets('.gpu/data').items()]"

clean:
	rm -rf _build

distclean: clean
	rm -rf $(VENV) node_modules
