# Targets a new user needs: `make test` (everything the tests need, then every test), `make up` /
# `make down` (both sandboxes and airflow standalone, in the background), and
# `make sandbox-salesforce` / `make sandbox-zuora` (one sandbox in the foreground).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SF_HOST ?= 127.0.0.1
# Where `make up` has Airflow's API server (UI, REST API, callouts) listen; 0.0.0.0: every interface.
AIRFLOW_HOST ?= 127.0.0.1
SF_PORT ?= 8443
SF_DATA ?= .sandbox/salesforce
ZUORA_PORT ?= 8081
ZUORA_DATA ?= .sandbox/zuora
# pytest-xdist workers of `make test` (the suite mostly waits on servers; 0: one process, no xdist).
TEST_WORKERS ?= 2

.PHONY: install test up down sandbox-salesforce sandbox-zuora clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Debian packages the tests run, installed here when missing: Chromium (/usr/bin/chromium) for the
# browser tests, PostgreSQL for the state store's tests and the production shape's metadata DB,
# Redis (redis-server) for the production shape's Celery broker and curl for its healthchecks
# (tests/production).
test: $(STAMP)
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages the tests need:$$missing (browser tests; PostgreSQL; the Celery broker and healthchecks) ..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; \
		else echo "error: missing$$missing and this is not root (no sudo): apt-get install -y$$missing" >&2; exit 1; fi; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -n $(TEST_WORKERS)

up: $(STAMP)
	$(BIN)/python -m sandbox.stack up --dir .sandbox/stack --airflow-host $(AIRFLOW_HOST)

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sandbox.stack down --dir .sandbox/stack; else echo "nothing to stop"; fi

sandbox-salesforce: $(STAMP)
	$(BIN)/zuora-sync-sandbox salesforce --host $(SF_HOST) --port $(SF_PORT) --data-dir $(SF_DATA) \
		--accounts 50 --seed 1 --env-file .sandbox/salesforce.env

sandbox-zuora: $(STAMP)
	$(BIN)/zuora-sync-sandbox zuora --host $(SF_HOST) --port $(ZUORA_PORT) --data-dir $(ZUORA_DATA) \
		--accounts 50 --seed 1 --env-file .sandbox/zuora.env

clean:
	rm -rf $(VENV) .sandbox build *.egg-info include/*.egg-info
