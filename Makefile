# Two commands: `make run` (the whole system) and `make test` (everything CI checks).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: install proxy run test lint format db db-stop psql demo bench chaos clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## The buffering proxy (nginx) in front of gunicorn: `make run` uses it when installed, the
## process tests need it. Installs Debian's nginx with apt-get if it is missing.
NGINX_FOUND := command -v nginx >/dev/null || test -x /usr/sbin/nginx
proxy:
	@$(NGINX_FOUND) || { \
	  echo "nginx is missing: installing it (apt-get install nginx)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx >/dev/null; }
	@$(NGINX_FOUND) || { echo "make proxy: nginx could not be installed" >&2; exit 1; }

## Start everything on one machine (embedded Postgres unless DATABASE_URL is set).
run: install
	PORT=$(PORT) $(BIN)/python -m devtools.launcher

## Lint, type-check and check the layers, then the whole test suite against a real Postgres.
test: install proxy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@if [ -z "$$DATABASE_URL" ]; then $(BIN)/python -m devtools.embedded_postgres start >/dev/null; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

db: install
	$(BIN)/python -m devtools.embedded_postgres start

db-stop: install
	$(BIN)/python -m devtools.embedded_postgres stop

psql: install
	$(BIN)/python -m devtools.embedded_postgres psql

## Benchmark: fresh loaded database, Postgres ceiling, the whole stack under HTTP load.
## Options after BENCH_ARGS=, e.g. BENCH_ARGS=--quick (see python -m bench --help).
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

## Chaos soak: the whole stack under a seeded fault schedule; CHAOS_ARGS=--short for CI.
chaos: install
	$(BIN)/python -m chaos $(CHAOS_ARGS)

## With `make run` up: a customer places a few trades and watches them settle.
demo: install
	$(BIN)/python -m devtools.demo

clean:
	-$(BIN)/python -m devtools.embedded_postgres stop
	rm -rf $(VENV) .pgdata .pgdata-chaos staticfiles .pytest_cache .ruff_cache
