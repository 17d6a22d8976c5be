# One entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
# uv from PATH when present; otherwise bootstrapped into .tools/ with the machine's pip.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
# uv must not download interpreters: use the machine's Python (docs/facts.md).
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
RUN := $(UV) run --frozen --no-sync

.PHONY: help install run worker test test-all check lint typecheck coverage migrate revision print-config \
	clean bench bench-quick sbom audit hooks template-check dashboard

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Compiled at install, as the image does: with PYTHONDONTWRITEBYTECODE set (common in CI and
# container shells) every process would otherwise compile its imports again (docs/testing.md).
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: .venv/.synced ## create .venv from uv.lock (exact versions, nothing else)

run: install ## serve on http://127.0.0.1:8000 under Gunicorn (local PostgreSQL if no DATABASE_URL)
	@HOST=$${HOST:-127.0.0.1} $(RUN) python -m devtools.run web

# jobs-only
worker: install ## the background-job worker, next to `make run` (same database); /health on :8001
	@HOST=$${HOST:-127.0.0.1} $(RUN) python -m devtools.run worker
# /jobs-only

# Two tiers (README: Tests). `make test` is the loop while working: static checks and the tests
# that take seconds. `make test-all` is every test, as CI runs it: the tests that do not measure
# time run in parallel (pytest-xdist), then the timing-sensitive ones alone (marker `serial`),
# all under coverage, then the coverage floor and the check that every documented command ran.
test: install lint typecheck ## the loop while working: lint, strict types, unit and integration tests, a real-Gunicorn smoke
	$(RUN) pytest -m "not slow" $(PYTEST_ARGS)

# The tests mostly wait on servers and subprocesses: two processes per CPU this make may use.
# A test file runs in one process (--dist loadfile), so a module's fixtures are set up once and
# its tests keep their order: the container tests' image is built once per file. The files
# start longest first (tests/conftest.py), not in xdist's order of most tests first, which
# left the one-test generation and benchmark files to run alone at the end.
TEST_JOBS ?= $(shell $(PYTHON) -c 'import os; print(min(8, 2 * len(os.sched_getaffinity(0))))')
test-all: install lint typecheck ## every test (servers, faults, signals, containers), coverage floor: what CI runs
	@$(RUN) python -m tests.ledger reset
	$(RUN) coverage erase
	$(RUN) coverage run -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder \
	  -m "not serial" $(PYTEST_ARGS)
	$(RUN) coverage run -m pytest -m serial $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory coverage
	$(RUN) python -m tests.ledger

check: lint typecheck ## ruff and mypy --strict

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy
# template-only
# The template's own folders, which generated services do not have.
	$(RUN) mypy hooks lab
# /template-only

coverage: install ## branch coverage of app/ from the last test-all; fails under the floor
	@$(RUN) coverage combine --quiet
	$(RUN) coverage report

SBOM ?= sbom.cdx.json
sbom: | $(UV) ## CycloneDX SBOM of the runtime packages (from uv.lock) into $(SBOM); installs nothing
	$(UV) export --frozen --no-dev --format cyclonedx1.5 --output-file $(SBOM) > /dev/null

audit: install ## known vulnerabilities in the locked runtime packages (pip-audit, PyPI's data)
	@mkdir -p .local && $(UV) export --frozen --no-dev --quiet \
	  --output-file .local/audit-requirements.txt > /dev/null
# --strict: a package it could not look up fails the audit instead of passing unchecked.
	$(RUN) pip-audit --requirement .local/audit-requirements.txt --require-hashes --disable-pip \
	  --strict --progress-spinner off

hooks: install ## pre-commit hooks: make lint and make typecheck before each commit
	$(RUN) pre-commit install

template-check: install ## cruft check: fails when the template has commits this service lacks
	$(RUN) cruft check

migrate: install ## apply migrations to DATABASE_URL
	$(RUN) alembic upgrade head

revision: install ## a migration from the models' changes: make revision m="add orders"
	$(RUN) python -m devtools.revision "$(m)"

dashboard: install ## rewrite deploy/grafana/dashboard.json from devtools/dashboard.py
	$(RUN) python -m devtools.dashboard

print-config: install ## print the effective Gunicorn configuration as JSON
	@$(RUN) python gunicorn_conf.py

clean: ## remove the environment and the local database
	rm -rf .venv .tools .local .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.* htmlcov mutants

bench: install ## requests/s and latency of this service's endpoints under Gunicorn (needs wrk)
	$(RUN) python -m bench $(if $(QUICK),--quick) $(BENCH_ARGS)
	$(RUN) python -m bench.idempotency $(if $(QUICK),--quick) $(BENCH_ARGS)
	$(RUN) python -m bench.jobs $(if $(QUICK),--quick) $(BENCH_ARGS)  # jobs-only

bench-quick: ## every benchmark once, briefly: shows that each runs (no figures)
	@$(MAKE) --no-print-directory bench QUICK=1

# template-only
# The template's laboratory (benchmarks against a bare app, mutation testing): in the template
# repository only, not in the services generated from it (README: What a service carries).
include lab/lab.mk
# /template-only
