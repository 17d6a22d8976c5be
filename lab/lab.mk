# The template's laboratory, included by the Makefile in the template repository only: the
# services generated from it do not carry lab/ (README: What a generated service carries).
.PHONY: bench-lab mutation

# `make bench` here also prints the comparisons behind the template's defaults.
bench: bench-lab

bench-lab: install ## the template's comparisons: the stack against a bare app, Gunicorn against uvicorn --workers, worker counts, memory, reloads
	$(RUN) python -m lab.compare $(if $(QUICK),--quick)
	$(RUN) python -m lab.process_managers $(if $(QUICK),--quick)

# Not part of `make test-all`: about 40 minutes on two cores. Where the code lives and which
# tests run against it: [tool.mutmut] in pyproject.toml; the score and the survivors:
# lab/README.md. mutmut comes at this exact version for this run only (uv run --with): no
# generated service needs it in its lock file.
MUTMUT := mutmut==3.8.1
MUTATION_FLOOR ?= 90
mutation: install ## mutation testing of the breaker, settings, error bodies, HTTP limits and authentication
	rm -rf mutants
	$(UV) run --frozen --no-sync --with "$(MUTMUT)" mutmut run --max-children 2
	$(RUN) python -m lab.mutation_score --floor $(MUTATION_FLOOR)
