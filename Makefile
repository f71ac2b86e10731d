# Murmuration: `make run` starts everything, `make test` checks everything.
# Both create .venv, install the pinned requirements and, unless MONGO_URL is set, start an
# embedded MongoDB replica set (downloaded once into .cache/) that stops when they exit.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PORT       ?= 8000
MONGO_PORT ?= 27017
export PORT MONGO_PORT

.DEFAULT_GOAL := help
.PHONY: help install run cluster bench test lint typecheck mongosh clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required: set PYTHON=python3.11")'
	@echo "==> creating $(VENV) and installing pinned dependencies (first run only)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@echo "==> making sure a mongod is available"
	@$(PY) -m deploy.local.mongo install
	@touch $@

install: $(VENV)/.installed  ## create .venv and install everything

run: install  ## start MongoDB and the Braintree emulator (unless configured) and the service on PORT (default 8000)
	@$(PY) -m deploy.local.run

cluster: install  ## 3 mongod members, 2 instances and nginx on PORT (default 8000), all on loopback
	@$(PY) -m deploy.local.cluster

bench: install  ## benchmarks side by side with peers (not part of make test); writes bench/results/
	@$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@$(PY) bench/run.py

lint: install  ## ruff
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: install  ## mypy on service/, models/, handlers/ and the Python client
	@$(BIN)/mypy service models handlers clients/python/murmuration_client

test: install  ## lint, types, then the whole suite against a throw-away MongoDB replica set
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@echo "==> mypy"
	@$(BIN)/mypy service models handlers clients/python/murmuration_client
	@echo "==> pytest"
	@$(PY) -m deploy.local.mongo exec --ephemeral -- $(PY) -m pytest $(PYTEST_ARGS)

mongosh:  ## open the mongo shell on the local database (installs mongosh from npm once)
	@test -x .cache/mongosh/node_modules/.bin/mongosh || (echo "==> installing mongosh from npm (once)" && npm install --silent --prefix .cache/mongosh mongosh)
	@.cache/mongosh/node_modules/.bin/mongosh "$${MONGO_URL:-mongodb://127.0.0.1:$(MONGO_PORT)/$${MONGO_DB:-murmuration}?replicaSet=rs0}"

clean:  ## remove the virtualenv, local data and caches
	rm -rf $(VENV) var .cache .pytest_cache .mypy_cache .ruff_cache
