# Two commands: `make run` (the whole system) and `make test` (everything CI checks).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: install run test lint format db db-stop psql demo bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Start everything on one machine (embedded Postgres unless DATABASE_URL is set).
run: install
	PORT=$(PORT) $(BIN)/python -m brokerage.launcher

## Lint, then the whole test suite against a real Postgres.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if [ -z "$$DATABASE_URL" ]; then $(BIN)/python -m brokerage.embedded_postgres start >/dev/null; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

db: install
	$(BIN)/python -m brokerage.embedded_postgres start

db-stop: install
	$(BIN)/python -m brokerage.embedded_postgres stop

psql: install
	$(BIN)/python -m brokerage.embedded_postgres psql

clean:
	-$(BIN)/python -m brokerage.embedded_postgres stop
	rm -rf $(VENV) .pgdata staticfiles .pytest_cache .ruff_cache
