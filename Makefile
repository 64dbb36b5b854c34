# Two commands set up a brand-new machine:
#   make run   - install, migrate, create the demo, serve on http://127.0.0.1:$(PORT)/
#   make test  - install dev requirements, run the suite on SQLite, then on PostgreSQL + Redis when reachable
#                (unreachable: pass 2 is SKIPPED with a message; AUTOPILOT_REQUIRE_SERVICES=1 makes that a failure)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
WORKERS ?= 2
PYTEST_ARGS ?=
# Services for the second test pass: DATABASE_URL / REDIS_URL when set, else the local defaults.
# pytest-django creates and drops its own test database (test_<name>); it never writes to <name>.
PG_TEST_URL ?= $(if $(DATABASE_URL),$(DATABASE_URL),postgres://postgres@127.0.0.1:5432/autopilot)
REDIS_TEST_URL ?= $(if $(REDIS_URL),$(REDIS_URL),redis://127.0.0.1:6379/0)
# Printed without their passwords.
PG_TEST_SHOWN = $(shell echo '$(PG_TEST_URL)' | sed -E 's#//([^:/@]+):[^@]*@#//\1:***@#')
REDIS_TEST_SHOWN = $(shell echo '$(REDIS_TEST_URL)' | sed -E 's#//([^:/@]*):[^@]*@#//\1:***@#')
# The SQLite pass must not inherit the scale-out settings from the environment.
EMBEDDED_ENV := env -u DATABASE_URL -u REDIS_URL -u AUTOPILOT_BROKER

.PHONY: run test install install-dev migrate demo serve bench lint browser codex clean
# The tests use the pinned Codex CLI when `make codex` installed it.
export AUTOPILOT_CODEX_CLI ?= $(if $(wildcard $(CODEX_BIN)),$(CODEX_BIN),)

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (set PYTHON=... to another 3.11 interpreter)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.base-installed: requirements/base.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

$(VENV)/.dev-installed: requirements/dev.txt requirements/scale.txt requirements/base.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@ $(VENV)/.base-installed

install: $(VENV)/.base-installed
install-dev: $(VENV)/.dev-installed

migrate: install
	$(BIN)/autopilot setup

demo: migrate
	HOST=$(HOST) PORT=$(PORT) $(BIN)/autopilot demo

run: demo
	@echo "Autopilot: http://$(HOST):$(PORT)/  log in as 'admin', password: $$(cat "$${AUTOPILOT_DATA_DIR:-var}/admin-password.txt")"
	@echo "  back-office /admin/, API docs /api/docs/ (schema /api/schema/), health /healthz. Ctrl-C stops everything."
	$(BIN)/autopilot serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

serve: install
	$(BIN)/autopilot serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

# Debian packages the tests use for real: headless Chromium (Playwright drives it), bubblewrap
# (the command sandbox) and tmux (interactive sessions). Installed when missing and we are root;
# otherwise the tests that need them are skipped with a reason.
browser:
	@missing=""; [ -x /usr/bin/chromium ] || missing="$$missing chromium"; command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "Installing$$missing for the tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || { echo "could not install$$missing"; exit 1; }; \
	else echo "Missing Debian packages:$$missing (their tests will be skipped)"; fi

# The Codex CLI (optional backend), pinned, into .venv/node; its tests run when it is there.
CODEX_VERSION := 0.169.0
CODEX_BIN := $(CURDIR)/$(VENV)/node/node_modules/.bin/codex
codex:
	@if [ -x "$(CODEX_BIN)" ]; then :; \
	elif command -v npm >/dev/null; then \
	  echo "Installing @openai/codex@$(CODEX_VERSION) into $(VENV)/node"; \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/node @openai/codex@$(CODEX_VERSION) >/dev/null || echo "could not install the Codex CLI (its tests will be skipped)"; \
	else echo "npm is missing: the Codex CLI tests will be skipped"; fi

test: install-dev browser codex
	@echo "== Test pass 1: SQLite (embedded default)"
	$(EMBEDDED_ENV) AUTOPILOT_DATA_DIR=$(CURDIR)/var/test-sqlite $(BIN)/pytest -m "not postgres and not redis" $(PYTEST_ARGS); \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
	@if [ -n "$(PG_TEST_URL)" ] && $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3).close()" 2>/dev/null \
	   && $(BIN)/python -c "import redis; redis.Redis.from_url('$(REDIS_TEST_URL)', socket_connect_timeout=3).ping()" 2>/dev/null; then \
	  echo "== Test pass 2: PostgreSQL + Redis ($(PG_TEST_SHOWN), $(REDIS_TEST_SHOWN))"; \
	  AUTOPILOT_DATA_DIR=$(CURDIR)/var/test-pg DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) AUTOPILOT_CHANNEL_PREFIX=autopilot-test \
	    $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc; \
	elif [ -n "$$AUTOPILOT_REQUIRE_SERVICES" ]; then \
	  echo "PostgreSQL ($(PG_TEST_SHOWN)) or Redis ($(REDIS_TEST_SHOWN)) is not reachable, and AUTOPILOT_REQUIRE_SERVICES is set: failing"; exit 1; \
	else \
	  echo "== Test pass 2 SKIPPED: PostgreSQL ($(PG_TEST_SHOWN)) or Redis ($(REDIS_TEST_SHOWN)) not reachable"; \
	fi

# Every bench/*.py (except _helpers.py) runs; the target fails as soon as one benchmark fails.
bench: install-dev
	@shopt -s nullglob; benches=(bench/[!_]*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "No benchmarks in bench/"; exit 0; fi; \
	for b in "$${benches[@]}"; do \
	  echo "== $$b"; $(BIN)/python $$b || { echo "Benchmark FAILED: $$b"; exit 1; }; \
	done

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf var/test-sqlite var/test-pg
