# ukg2d365 developer tasks. Everything runs inside .venv, created on first use from plain python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# .ci/with-postgres starts a throwaway PostgreSQL for the shared-ledger tests (or says why they skip).
test: install
	.ci/with-postgres $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check ukg2d365 tests
	$(VENV)/bin/mypy ukg2d365

demo: install
	$(PY) -m ukg2d365.sandbox.demo

bench: install
	$(PY) -m tests.bench.benchmark
	$(PY) -m tests.bench.benchmark --routes --out bench-routes.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo sandbox-run
