# Sluice developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help setup services fmt lint typecheck test bench bench-redshift demo lambda-zip all clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PY_STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$$(grep '^uv==' requirements.lock)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP) ## install Python deps (locked) and the SQS emulator

services: ## start PostgreSQL if it is installed but not running; install promtool if missing
	./scripts/ensure-postgres.sh
	./scripts/ensure-tools.sh

fmt: setup ## format the code
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

lint: setup ## ruff
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: setup ## mypy --strict on src/
	$(BIN)/mypy src

test: setup services ## the whole test suite (emulator, PostgreSQL, DuckDB, real processes)
	$(BIN)/pytest

bench: setup services ## throughput benchmark: prints figures
	$(BIN)/python bench/throughput.py

bench-redshift: setup services ## Redshift path: 100 ms warehouse latency, requests per million
	$(BIN)/python bench/redshift_path.py latency --repeat 3
	$(BIN)/python bench/redshift_path.py requests

demo: setup ## 100,000 synthetic events through the emulator into DuckDB, reconciled
	$(BIN)/sluice demo

lambda-zip: setup ## the Lambda deployment zip (dist/sluice-lambda.zip) for this platform; prints its size
	$(BIN)/python scripts/build_lambda_zip.py --out dist/sluice-lambda.zip

all: lint typecheck test ## everything CI runs

clean: ## remove the environment and caches
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache sluice-demo.duckdb* dist
