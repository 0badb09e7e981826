# Two commands: `make run` (the whole system) and `make test` (everything CI checks).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: install proxy promtool run test lint format db db-stop psql demo bench bench-streams chaos clean \
	ha-install ha ha-stop ha-status chaos-ha manage

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

## promtool, which the tests of deploy/prometheus run (check and test the alerting rules, check
## the scrape config). Installs Debian's prometheus, which ships it, with apt-get if missing;
## under systemd the package starts and enables a Prometheus server, which is stopped and
## disabled (without systemd, as in a container, it starts none).
PROMTOOL_FOUND := command -v promtool >/dev/null || test -x /usr/bin/promtool
promtool:
	@$(PROMTOOL_FOUND) || { \
	  echo "promtool is missing: installing it (apt-get install prometheus)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus >/dev/null && \
	  { [ ! -d /run/systemd/system ] || \
	    $$SUDO systemctl disable --now --quiet prometheus.service; }; }
	@$(PROMTOOL_FOUND) || { echo "make promtool: promtool could not be installed" >&2; exit 1; }

## High availability: Patroni (the `ha` extra, from PyPI) and etcd (Debian's etcd-server,
## installed with apt-get when missing).
$(BIN)/.ha-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,ha]'
	touch $@

ha-install: $(BIN)/.ha-installed
	@command -v etcd >/dev/null || { \
	  echo "etcd is missing: installing it (apt-get install etcd-server)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq etcd-server >/dev/null; }
	@command -v etcd >/dev/null || { echo "make ha-install: etcd could not be installed" >&2; exit 1; }

## A local HA Postgres: etcd and three nodes under Patroni on 127.0.0.1:5441-5443 (synchronous
## mode strict). Prints the multi-host DATABASE_URL; `make run HA=1` runs everything on it.
ha: ha-install
	$(BIN)/python -m devtools.ha_cluster start

ha-status: ha-install
	$(BIN)/python -m devtools.ha_cluster status

ha-stop: ha-install
	$(BIN)/python -m devtools.ha_cluster stop

## Start everything on one machine (embedded Postgres unless DATABASE_URL is set; HA=1: on
## the local HA cluster of `make ha`).
ifeq ($(HA),1)
run: ha-install
else
run: install
endif
	PORT=$(PORT) HA=$(HA) $(BIN)/python -m devtools.launcher

## Lint, type-check and check the layers, then the whole test suite against a real Postgres.
test: install proxy promtool
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

## One stream server holding 1,000 event streams: memory per stream, commit-to-client delivery.
bench-streams: install
	$(BIN)/python -m bench.streams $(BENCH_ARGS)

## Chaos soak: the whole stack under a seeded fault schedule; CHAOS_ARGS=--short for CI.
chaos: install
	$(BIN)/python -m chaos $(CHAOS_ARGS)

## Failover soak: the stack on its own HA cluster, the primary killed three times and one
## switchover (CHAOS_ARGS=--short: one failover and the switchover, for CI).
chaos-ha: ha-install
	$(BIN)/python -m chaos --ha $(CHAOS_ARGS)

## With `make run` up: a customer places a few trades and watches them settle.
demo: install
	PORT=$(PORT) $(BIN)/python -m devtools.demo

## manage.py as `make run` runs it (development settings, the embedded Postgres unless
## DATABASE_URL is set), e.g. make manage ARGS='create_customer bob --cash 1000.00'.
manage: install
	DEBUG=$${DEBUG:-true} DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-settings.base} \
	  $(BIN)/python manage.py $(ARGS)

clean:
	-$(BIN)/python -m devtools.embedded_postgres stop
	-$(BIN)/python -m devtools.ha_cluster stop
	rm -rf $(VENV) .pgdata .pgdata-chaos .pgdata-ha .pgdata-ha-chaos staticfiles .pytest_cache .ruff_cache
