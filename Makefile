# One task runner for LeadFlow. Needs only python3 (3.11+) and make: uv is bootstrapped
# into .tools/ and installs everything else from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
LEADS ?= 5000
SIZE ?= 10000
SAMPLES ?= 3
RUNS ?= 3
# bench-noop measures 5,000 leads unless SIZE is given on the command line.
NOOP_SIZE = $(if $(filter command line,$(origin SIZE)),$(SIZE),5000)

# Nothing may wait on the network: telemetry off for every tool we run.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export GX_ANALYTICS_ENABLED := false
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Byte-compile at install: imports of Prefect, dbt and GX are then several seconds faster on
# every run, even where PYTHONDONTWRITEBYTECODE keeps Python from caching them itself.
export UV_COMPILE_BYTECODE := 1

.PHONY: demo test test-fast lint format docs bench bench-noop clean help

help:
	@echo "make demo   - install, generate $(LEADS) sample leads and run the whole pipeline"
	@echo "make test   - install with dev tools, lint, and run the whole test suite"
	@echo "make lint   - ruff, mypy and sqlfluff"
	@echo "make docs   - dbt docs and GX Data Docs"
	@echo "make test-fast - the tests without the slow end-to-end ones"
	@echo "make bench  - benchmark the pipeline at SIZE=$(SIZE) leads, the transform SAMPLES=$(SAMPLES) times (results in docs/benchmarks.md)"
	@echo "make bench-noop - the hourly run with nothing new at SIZE=$(NOOP_SIZE) leads, RUNS=$(RUNS) hours, on a Prefect server (docs/benchmarks.md)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced-runtime: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON) --quiet
	@touch $@

$(VENV)/.synced-dev: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --inexact --group dev --python $(PYTHON) --quiet
	@touch $@ $(VENV)/.synced-runtime

demo: $(VENV)/.synced-runtime
	$(VENV)/bin/leadflow demo --leads $(LEADS)

test: $(VENV)/.synced-dev lint
	$(VENV)/bin/python -m pytest --durations=20

test-fast: $(VENV)/.synced-dev
	$(VENV)/bin/python -m pytest -m "not slow"

# sqlfluff's dbt templater compiles the project: the profile gets a scratch warehouse.
lint: $(VENV)/.synced-dev
	$(VENV)/bin/ruff check flows tests bench
	$(VENV)/bin/ruff format --check flows tests bench
	$(VENV)/bin/mypy
	cd dbt_project && LEADFLOW_WAREHOUSE_PATH=$${TMPDIR:-/tmp}/leadflow-lint.duckdb \
		../$(VENV)/bin/sqlfluff lint models snapshots tests

format: $(VENV)/.synced-dev
	$(VENV)/bin/ruff check --fix flows tests bench
	$(VENV)/bin/ruff format flows tests bench

docs: $(VENV)/.synced-runtime
	$(VENV)/bin/leadflow docs

bench: $(VENV)/.synced-runtime
	$(VENV)/bin/python -m bench.run --size $(SIZE) --transform-samples $(SAMPLES)

bench-noop: $(VENV)/.synced-runtime
	$(VENV)/bin/python -m bench.noop --size $(NOOP_SIZE) --runs $(RUNS) --record

clean:
	rm -rf data dbt_project/target dbt_project/logs dbt_project/dbt_packages
