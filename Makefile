# Renewly's single entry point. `make demo` and `make test` are the README's two commands.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The suite runs on the machine's real PostgreSQL unless DATABASE_URL says otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/renewly
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/renewly_bench
FAULTS_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/renewly_faults
DEMO_ENV := DEBUG=1

.PHONY: help setup system-deps demo web test test-sqlite lint format bench bench-import \
	bench-planning bench-dispatch bench-workspace bench-reports bench-upload \
	bench-api bench-isolation bench-smoke \
	faults clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/pip check
	touch $@

setup: $(BIN)/.installed ## create .venv and install the pinned dependencies

system-deps: ## install the Debian packages the tests drive (docker-compose, chromium)
	scripts/install-system-deps

demo: setup ## THE RUN COMMAND: a full daily reminder cycle on embedded defaults, no server
	scripts/demo

web: setup ## serve the admin on the demo database at http://127.0.0.1:8000/admin/
	$(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:8000

test: setup system-deps lint ## THE TEST COMMAND: the whole suite on PostgreSQL, Redis and RabbitMQ
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(BIN)/pytest

test-sqlite: setup ## the fast run on the embedded SQLite default (no broker tests)
	DATABASE_URL=sqlite:///$(CURDIR)/var/renewly.sqlite3 $(BIN)/pytest -m "not services"

lint: setup ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: bench-import bench-planning bench-dispatch bench-workspace bench-reports bench-upload \
	bench-api bench-isolation ## every benchmark

bench-smoke: setup ## every benchmark at its smallest size, as make test runs them
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(BIN)/pytest tests/benchmarks

bench-import: setup ## time importing 100,000 policy rows into PostgreSQL, then 1,000,000 in a process under 300 MB
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_import.py --rows 100000 --large-rows 1000000 --fail-over-mb 300

bench-planning: setup ## time both planners with 1,000,000 and 200,000 policies, then a 5,000,000 steady day
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_planning.py
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_planning.py --sizes 5000000 --steady-only

bench-dispatch: setup ## send 20,000 reminders through Celery workers on Redis to a fake provider
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_dispatch.py

bench-workspace: setup ## time the agents' workspace pages with 100,000 notifications in one book
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_workspace.py

bench-reports: setup ## time issue 15's pages and counts with 1,000,000 policies, 5,000,000 reminders
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_reports.py --fail-over-ms 300

bench-upload: setup ## upload 100,000 rows, then 100 MB, through the upload view to a worker
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_upload.py --rows 100000
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_upload.py --megabytes 100 --timeout 1200

bench-api: setup ## 100,000 rows, PUTs and 20,000 events through the API on gunicorn and Celery
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_api.py

bench-isolation: setup ## 20,000 reminders idle, then during a 100,000-row upload on the bulk queue
	DATABASE_URL=$${BENCH_DATABASE_URL:-$(BENCH_DATABASE_URL)} $(BIN)/python benchmarks/bench_isolation.py --during-upload 100000 --fail-over 1.5

faults: setup ## every fault (workers killed, broker, PostgreSQL, Beat, provider) on Redis and RabbitMQ
	DATABASE_URL=$${FAULTS_DATABASE_URL:-$(FAULTS_DATABASE_URL)} $(BIN)/python benchmarks/faults.py

clean: ## remove the virtualenv and everything under var/
	rm -rf $(VENV) var
