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

.PHONY: help install run test check lint typecheck pytest coverage mutation migrate print-config clean bench bench-quick sbom audit hooks template-check

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced ## create .venv from uv.lock (exact versions, nothing else)

run: install ## serve on http://127.0.0.1:8000 under Gunicorn (local PostgreSQL if no DATABASE_URL)
	@HOST=$${HOST:-127.0.0.1} $(RUN) python -m devtools.run

# What `make test` runs, in order. .github/workflows/ci.yml runs the same, one step per target
# (tests/supply_chain/test_workflows.py holds the two equal).
TEST_STEPS := lint typecheck pytest coverage
test: install $(TEST_STEPS) ## lint, type-check, run every test (throwaway PostgreSQL), coverage floor

check: lint typecheck ## ruff and mypy --strict

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy
# The cookiecutter hooks exist in the template repository only, not in generated services.
	$(if $(wildcard hooks),$(RUN) mypy hooks)

# Under coverage.py: Gunicorn's master and workers started by the tests are measured too.
pytest: install
	$(RUN) coverage erase
	$(RUN) coverage run -m pytest $(PYTEST_ARGS)

coverage: install ## branch coverage of app/ from the last test run; fails under the floor
	@$(RUN) coverage combine --quiet
	$(RUN) coverage report

# Not part of `make test`: about 20 minutes on two cores. Where the code lives and which tests
# run against it: [tool.mutmut] in pyproject.toml; the score and the survivors: docs/testing.md.
MUTATION_FLOOR ?= 90
mutation: install ## mutation testing of the breaker, settings, error bodies and HTTP limits
	rm -rf mutants
	$(RUN) mutmut run --max-children 2
	@$(RUN) mutmut export-cicd-stats
	$(RUN) python -m devtools.mutation_score --floor $(MUTATION_FLOOR)

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

print-config: install ## print the effective Gunicorn configuration as JSON
	@$(RUN) python gunicorn_conf.py

clean: ## remove the environment and the local database
	rm -rf .venv .tools .local .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.* htmlcov mutants

bench: install ## stack vs bare app, Gunicorn vs uvicorn, workers, memory, recycling (needs wrk)
	$(RUN) python -m bench.run $(BENCH_ARGS)
	$(RUN) python -m bench.server $(BENCH_SERVER_ARGS)

bench-quick: install ## every benchmark once, briefly: shows the benchmark runs (no figures)
	@$(MAKE) --no-print-directory bench BENCH_ARGS="--rounds 1 --seconds 1" \
	  BENCH_SERVER_ARGS="--rounds 1 --seconds 1 --recycle-seconds 1 --memory-requests 1000 2000"
